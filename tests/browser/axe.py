"""Accessibility check shared by the browser tests: axe-core run inside the page (axe-playwright-python).

The package ships axe.min.js (axe-core 4.12) inside its wheel; Playwright injects it through the
DevTools protocol, so nothing is fetched from outside and the site's Content-Security-Policy does not
apply to it. Only serious and critical violations fail a test (the issue's bar); the others are left
to a human review of the page.

    from .axe import assert_no_serious_axe_violations
    assert_no_serious_axe_violations(page, context="consent page, 375 px")
"""

from axe_playwright_python.sync_playwright import Axe

FAILING_IMPACTS = ("serious", "critical")
# WCAG 2.0/2.1/2.2 A and AA plus axe's best practices: what the impact levels are defined against.
RUN_OPTIONS = {
    "resultTypes": ["violations"],
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]},
}

_axe = Axe()


def serious_axe_violations(page) -> list[dict]:
    """The serious or critical violations axe finds on the page as it is now (after any htmx swap)."""
    response = _axe.run(page, options=RUN_OPTIONS).response
    return [violation for violation in response["violations"] if violation.get("impact") in FAILING_IMPACTS]


def describe(violations: list[dict]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']} [{violation['helpUrl']}]")
        for node in violation["nodes"]:
            target = ", ".join(str(part) for part in node.get("target", []))
            html = " ".join((node.get("html") or "").split())[:200]
            lines.append(f"    {target}: {html}")
            if node.get("failureSummary"):
                lines.append("      " + " ".join(node["failureSummary"].split()))
    return "\n".join(lines)


def assert_no_serious_axe_violations(page, context: str = "") -> None:
    """Fails, listing each violation's id, impact and nodes, when axe finds a serious or critical one."""
    violations = serious_axe_violations(page)
    if violations:
        report = describe(violations)
        print(f"axe on {context or page.url}:\n{report}")
        raise AssertionError(
            f"{len(violations)} serious/critical axe violation(s) on {context or page.url} ({page.url}):\n{report}"
        )
