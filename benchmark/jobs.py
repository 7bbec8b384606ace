"""The job kinds this app owns: the disagreement report, the model benchmark, latent states, the jury,
prompt selection.

Registered with the jobs app in BenchmarkConfig.ready(). Each kind is a parameter schema (unknown keys
refused; a client names an upload by id, never a file) and a handler that calls one service and writes
the job's files; none writes the study's rows, so each reads them from the replica when there is one
(`replica_reads`, config/db_router.py).
"""

from __future__ import annotations

import json

import pandas as pd
from rest_framework import serializers

from annotation.exports import spreadsheet_csv
from annotation.models import Study, Upload
from config.errors import ApplicationError
from jobs.models import Job
from jobs.params import StrictBooleanField, StrictParams, seed_field
from jobs.registry import JobKind, Progress
from jobs.services import artifact_dir, artifact_save

# The science behind these kinds (scipy, scikit-learn, statsmodels, the predictors) takes seconds to
# import. This module is imported in BenchmarkConfig.ready(), i.e. by every process (web, worker,
# manage.py), so the handlers and validators import it when a job is checked or run, not here.


class AnalysisParams(StrictParams):
    mixed_effects = StrictBooleanField(default=True)
    include_excluded = StrictBooleanField(default=False)
    n_boot = serializers.IntegerField(min_value=0, max_value=100_000, default=1000)
    seed = seed_field()


class BenchmarkParams(StrictParams):
    predictors = serializers.ListField(child=serializers.CharField(), default=list, max_length=100)
    conditions = serializers.ListField(child=serializers.CharField(), required=False, allow_empty=False, max_length=10)
    splits = serializers.IntegerField(min_value=1, max_value=100, default=10)
    seed = seed_field(help_text="The first seed; the run uses seeds seed, seed + 1, …, seed + seeds − 1.")
    seeds = serializers.IntegerField(
        min_value=1, max_value=20, default=10, help_text="How many seeds of the 10-split protocol to average."
    )
    locked = StrictBooleanField(
        default=False, help_text="Use the locked seeds (for claims; see docs/analysis.md) instead of seed…"
    )
    upload = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        default=None,
        help_text="Id of a predictions upload of this study (for the 'uploaded' predictor).",
    )

    def validate_predictors(self, value):
        from .evaluation import predictor_names  # noqa: PLC0415  (see the note at the imports)

        unknown = sorted(set(value) - set(predictor_names()))
        if unknown:
            raise serializers.ValidationError(f"unknown predictor(s): {', '.join(unknown)}")
        return value

    def validate_conditions(self, value):
        from .science.protocol import CONDITIONS  # noqa: PLC0415  (see the note at the imports)

        if not set(value) <= set(CONDITIONS):
            raise serializers.ValidationError(f"conditions must be a non-empty list from {', '.join(CONDITIONS)}")
        return value

    def validate(self, attrs):
        from .science.protocol import CONDITIONS  # noqa: PLC0415  (see the note at the imports)

        attrs.setdefault("conditions", list(CONDITIONS))
        study: Study | None = self.context.get("study")
        upload = attrs.get("upload")
        if "uploaded" in attrs["predictors"] and upload is None:
            raise serializers.ValidationError({"upload": "the 'uploaded' predictor needs an uploaded predictions file"})
        if upload is not None:
            if (
                study is None
                or not Upload.objects.filter(pk=upload, study=study, kind=Upload.Kind.PREDICTIONS).exists()
            ):
                raise serializers.ValidationError({"upload": f"no predictions upload #{upload} in this study"})
            if "uploaded" not in attrs["predictors"]:
                attrs["predictors"] = [*attrs["predictors"], "uploaded"]
        return attrs


def analysis_run(job: Job, progress: Progress) -> dict:
    from .analysis import study_report  # noqa: PLC0415  (see the note at the imports)

    report = study_report(study=job.study, progress=progress, **job.params)
    out = artifact_dir(job)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    # Spreadsheet-facing tables: formula-like text is neutralised (annotation.exports.spreadsheet_csv).
    (out / "prompts.csv").write_text(spreadsheet_csv(pd.DataFrame(report["prompts"])), encoding="utf-8")
    (out / "annotators.csv").write_text(spreadsheet_csv(pd.DataFrame(report["annotators"])), encoding="utf-8")
    for name in ("report.json", "prompts.csv", "annotators.csv"):
        artifact_save(job=job, path=out / name)
    return report


def benchmark_run(job: Job, progress: Progress) -> dict:
    from .evaluation import groups_table, study_benchmark  # noqa: PLC0415  (see the note at the imports)
    from .science.report import to_jsonable  # noqa: PLC0415

    p = job.params
    summary, result = study_benchmark(
        study=job.study,
        predictors=p["predictors"] or None,
        n_splits=p["splits"],
        seed=p["seed"],
        n_seeds=p.get("seeds", 1),
        locked=p.get("locked", False),
        conditions=p["conditions"],
        upload_id=p.get("upload"),
        progress=progress,
    )
    out = artifact_dir(job)
    out.mkdir(parents=True, exist_ok=True)
    summary = to_jsonable(summary)  # NaN (e.g. Spearman of constant predictions) becomes null
    (out / "benchmark.json").write_text(json.dumps(summary, indent=1))
    tables = {"per_seed": result.per_seed}
    for name in ("per_split", "per_annotator", "per_prompt"):
        tables[name] = pd.concat(
            [getattr(r, name).assign(seed=s) for s, r in zip(result.seeds, result.results)], ignore_index=True
        )
    tables["groups"] = groups_table(summary.get("groups", []))
    for name, table in tables.items():
        (out / f"{name}.csv").write_text(spreadsheet_csv(table), encoding="utf-8")
    files = ("benchmark.json", "per_seed.csv", "per_split.csv", "per_annotator.csv", "per_prompt.csv", "groups.csv")
    for name in files:
        artifact_save(job=job, path=out / name)
    return summary


ANALYSIS = JobKind(
    name="analysis", label="Disagreement report", params=AnalysisParams, handler=analysis_run, replica_reads=True
)
BENCHMARK = JobKind(
    name="benchmark", label="Model benchmark", params=BenchmarkParams, handler=benchmark_run, replica_reads=True
)


class LatentParams(StrictParams):
    model = serializers.ChoiceField(
        choices=["engagement", "drift"],
        default="engagement",
        error_messages={"invalid_choice": "unknown model {input!r}; choose engagement or drift"},
    )
    response_times = serializers.ChoiceField(
        choices=["auto", "use", "ignore"],
        default="auto",
        help_text="auto: use them when at least half the ratings have one; use; ignore (the no-rt network).",
    )
    flag_share = serializers.FloatField(
        min_value=0.01,
        max_value=1.0,
        default=0.2,
        help_text="Flag for review from this expected share of disengaged trials (a flag never excludes).",
    )


def latent_run(job: Job, progress: Progress) -> dict:
    from .latent import ANNOTATORS_FILE, TRIALS_FILE, study_latent  # noqa: PLC0415  (torch: see the note above)

    out = artifact_dir(job)
    p = job.params
    result = study_latent(
        study=job.study,
        model=p["model"],
        response_times=p["response_times"],
        flag_share=p["flag_share"],
        out_dir=out,
        progress=progress,
    )
    for name in (TRIALS_FILE, ANNOTATORS_FILE):
        if (out / name).exists():
            artifact_save(job=job, path=out / name)
    return result


LATENT = JobKind(
    name="latent", label="Latent annotator states", params=LatentParams, handler=latent_run, replica_reads=True
)


class JuryParams(StrictParams):
    mode = serializers.ChoiceField(
        choices=["collected", "census", "custom"],
        default="collected",
        help_text="The population: as collected, as a named census (census), or custom marginals (mix).",
    )
    census = serializers.CharField(required=False, allow_blank=True, default="")
    mix = serializers.DictField(
        child=serializers.DictField(child=serializers.FloatField(min_value=0.0, max_value=1.0)),
        required=False,
        default=dict,
        help_text='{"<demographic column>": {"<level>": share, ...}, ...}, shares summing to 1 per column.',
    )
    size = serializers.IntegerField(min_value=1, max_value=100_000, default=1000, help_text="Members per jury (N).")
    juries = serializers.IntegerField(min_value=2, max_value=2000, default=200, help_text="Bootstrap juries.")
    threshold = serializers.FloatField(min_value=0.0, max_value=100.0, default=50.0, help_text="Harm threshold.")
    predictor = serializers.CharField(required=False, allow_blank=True, default="")
    ratings = StrictBooleanField(
        default=False, help_text="Use the members' own ratings of other prompts too (a warm-condition predictor)."
    )
    fits = serializers.IntegerField(min_value=1, max_value=20, default=5, help_text="Bootstrap fits of the predictor.")
    seed = seed_field()
    validation = StrictBooleanField(default=True, help_text="Also run the held-out validation (30 annotators).")

    def validate(self, attrs):
        from .science.jury import census_names, jury_predictors  # noqa: PLC0415  (see the note at the imports)

        usable = jury_predictors(ratings=attrs["ratings"])
        if attrs.get("predictor") and attrs["predictor"] not in usable:
            kind = (
                "a predictor that learns from an annotator's own ratings"
                if attrs["ratings"]
                else "a predictor of new annotators"
            )
            raise serializers.ValidationError(
                {
                    "predictor": f"the jury needs {kind}; {attrs['predictor']!r} is not one "
                    f"(choose from {', '.join(usable)})"
                }
            )

        if attrs["mode"] == "census" and attrs.get("census") not in census_names():
            raise serializers.ValidationError({"census": f"choose a census from {', '.join(census_names())}"})
        if attrs["mode"] == "custom" and not attrs.get("mix"):
            raise serializers.ValidationError({"mix": "a custom mix needs at least one column's shares"})
        for column, levels in (attrs.get("mix") or {}).items():
            if not levels:
                raise serializers.ValidationError({"mix": f"{column}: give at least one level's share"})
            total = sum(levels.values())
            if abs(total - 1.0) > 0.005:
                raise serializers.ValidationError({"mix": f"{column}: the shares sum to {total:.4f}, not 1"})
        return attrs


JURY_FILE = "jury.json"
JURY_CSV = "jury_prompts.csv"


def jury_run(job: Job, progress: Progress) -> dict:
    from .jury import study_jury  # noqa: PLC0415  (see the note at the imports)
    from .science.report import to_jsonable  # noqa: PLC0415

    p = job.params
    result = to_jsonable(
        study_jury(
            study=job.study,
            mode=p["mode"],
            mix=p.get("mix") or None,
            census=p.get("census") or None,
            size=p["size"],
            n_juries=p["juries"],
            threshold=p["threshold"],
            predictor=p.get("predictor") or None,
            n_fits=p["fits"],
            seed=p["seed"],
            ratings=p.get("ratings", False),
            validate=p["validation"],
            progress=progress,
        )
    )
    out = artifact_dir(job)
    out.mkdir(parents=True, exist_ok=True)
    (out / JURY_FILE).write_text(json.dumps(result, indent=1))
    table = pd.DataFrame([{k: v for k, v in row.items() if k != "distribution"} for row in result["prompts"]])
    (out / JURY_CSV).write_text(spreadsheet_csv(table), encoding="utf-8")
    for name in (JURY_FILE, JURY_CSV):
        artifact_save(job=job, path=out / name)
    return result


JURY = JobKind(name="jury", label="Jury view", params=JuryParams, handler=jury_run, replica_reads=True)


class SelectionParams(StrictParams):
    k = serializers.IntegerField(min_value=1, max_value=100_000, help_text="How many prompts to choose.")
    targets = serializers.JSONField(
        default="paper",
        help_text="paper: PluriHarms' harm-level target, uniform for the rest; uniform: uniform everywhere; or an "
        "object as a targets file of `manage.py curate select` (harm_level, actions, effects, values, weights).",
    )
    max_per_group = serializers.IntegerField(
        min_value=0, max_value=1000, default=2, help_text="At most this many prompts of one seed group (0: no limit)."
    )
    optimizer = serializers.ChoiceField(choices=["best", "ga"], default="best")
    seed = seed_field()
    pool = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Choose from this candidate pool of the study (its number); empty: from the study's prompts.",
    )
    pilot = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=100,
        help_text="Lean toward predicted disagreement: the slug of a study whose ratings are the pilot (this study's "
        "own, or another study of its owner); empty: no pilot.",
    )
    disagreement_weight = serializers.FloatField(
        min_value=0.0,
        max_value=10.0,
        default=0.05,
        help_text="With a pilot: objective units per SD of standardised predicted disagreement.",
    )
    embedding = StrictBooleanField(
        default=True, help_text="With a pilot: the model also reads each candidate's MiniLM embedding."
    )

    def validate_targets(self, value):
        if isinstance(value, str):
            if value not in ("paper", "uniform"):
                raise serializers.ValidationError(f"unknown targets {value[:40]!r}: paper, uniform or an object")
        elif not isinstance(value, dict):
            raise serializers.ValidationError("targets must be paper, uniform or an object")
        return value

    def validate(self, attrs):
        from .curation import selection_pool  # noqa: PLC0415  (see the note at the imports)
        from .science.curation import TargetsError, targets_resolve  # noqa: PLC0415

        study: Study | None = self.context.get("study")
        if study is not None:
            if attrs.get("pool") is not None:
                from .pool_curation import pool_for_params  # noqa: PLC0415

                n = pool_for_params(study=study, pool_id=attrs["pool"]).candidates.count()
                if attrs["k"] > n:
                    raise serializers.ValidationError({"k": f"K = {attrs['k']} is more than the pool's {n} candidates"})
            else:
                n = study.prompts.count()
                if attrs["k"] > n:
                    raise serializers.ValidationError({"k": f"K = {attrs['k']} is more than the study's {n} prompts"})
            built = []

            def pool():  # read once (every candidate), for whichever check needs it first
                if not built:
                    built.append(selection_pool(study=study, pool_id=attrs.get("pool")))
                return built[0]

            if isinstance(attrs["targets"], dict):
                try:  # checked against the categories the study's prompts have, before a job is queued
                    targets_resolve(attrs["targets"], pool().dimensions_available())
                except (TargetsError, ApplicationError) as exc:
                    raise serializers.ValidationError({"targets": str(exc)}) from None
            if attrs["pilot"]:
                from .pilot import pilot_matrix, pilot_study_get  # noqa: PLC0415

                try:  # a pilot without enough ratings on the pool's prompts is refused before a job is queued
                    pilot = pilot_study_get(study=study, slug=attrs["pilot"], user=self.context.get("user"))
                    pilot_matrix(pool=pool(), pilot=pilot)
                except ApplicationError as exc:
                    raise serializers.ValidationError({"pilot": exc.message}) from None
        return attrs


def selection_run(job: Job, progress: Progress) -> dict:
    from .curation import REPORT_FILE, SELECTED_FILE  # noqa: PLC0415  (see the note at the imports)
    from .curation import selection_run as run  # noqa: PLC0415

    p = job.params
    selected, report = run(
        study=job.study,
        k=p["k"],
        targets=p["targets"],
        max_per_group=p["max_per_group"] or None,
        optimizer=p["optimizer"],
        seed=p["seed"],
        pool_id=p.get("pool"),
        pilot=p.get("pilot") or None,
        disagreement_weight=p.get("disagreement_weight", 0.05),
        embedding=p.get("embedding", True),
        progress=progress,
    )
    out = artifact_dir(job)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=1, allow_nan=False))
    (out / SELECTED_FILE).write_text(spreadsheet_csv(selected), encoding="utf-8")
    for name in (REPORT_FILE, SELECTED_FILE):
        artifact_save(job=job, path=out / name)
    return report


SELECTION = JobKind(
    name="selection", label="Prompt selection", params=SelectionParams, handler=selection_run, replica_reads=True
)
