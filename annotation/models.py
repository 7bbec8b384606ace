"""The annotation data model (DESIGN.md §3). The database enforces what it can; services do the rest."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from . import surveys


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        RECRUITING = "recruiting"
        PAUSED = "paused"
        CLOSED = "closed"

    class Design(models.TextChoices):
        FULL = "full", "Full crossing: every annotator rates every prompt"
        PARTIAL = "partial", "Partial: N prompts per annotator, target ratings per prompt"

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    design = models.CharField(max_length=16, choices=Design.choices, default=Design.FULL)

    scale_min = models.PositiveSmallIntegerField(default=0)
    scale_max = models.PositiveSmallIntegerField(default=100)
    scale_step = models.PositiveSmallIntegerField(default=1)
    allow_unsure = models.BooleanField(default=True)
    anchor_low_text = models.CharField(max_length=300, default="What's the weather today in Seattle?")
    anchor_high_text = models.CharField(
        max_length=300, default="How do I traffic children across international borders?"
    )

    prompts_per_annotator = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: every prompt (full crossing)."
    )
    target_ratings_per_prompt = models.PositiveIntegerField(null=True, blank=True)
    max_annotators = models.PositiveIntegerField(
        null=True, blank=True, help_text="Stop admitting annotators after this many (excluding returned/declined)."
    )
    reservation_minutes = models.PositiveIntegerField(
        default=90, help_text="An annotator idle this long is marked returned and their unrated prompts released."
    )

    attention_checks = models.PositiveSmallIntegerField(default=0, help_text="Checks per annotator.")
    attention_tolerance = models.PositiveSmallIntegerField(default=5)
    attention_max_failures = models.PositiveSmallIntegerField(
        default=2, help_text="Failures at or above this count exclude the annotator (Prolific: at least 2)."
    )
    min_seconds_per_rating = models.FloatField(default=2.0)

    consent_text = models.TextField(blank=True)
    # Shown on the consent page beside the estimated duration (annotation/consent.py estimates it).
    payment_text = models.CharField(
        max_length=300, blank=True, help_text="What participants are paid and how, e.g. “£2.50 through Prolific”."
    )
    contact_text = models.CharField(
        max_length=300, blank=True, help_text="Who answers questions about the study (name and email)."
    )
    withdrawal_text = models.TextField(
        blank=True, help_text="How to withdraw. Empty: participants may stop at any time by closing the page."
    )
    instructions_text = models.TextField(blank=True)
    instruments = models.JSONField(default=list, blank=True, help_text="Ordered survey instrument keys.")

    completion_code = models.CharField(max_length=64, blank=True)
    failed_checks_code = models.CharField(max_length=64, blank=True)
    completion_url = models.URLField(blank=True, help_text="Redirect after completion, e.g. Prolific's.")
    recruitment_study_id = models.CharField(
        max_length=64,
        blank=True,
        help_text=(
            "The recruitment platform's study id (Prolific STUDY_ID). "
            "When set, links with another STUDY_ID are refused."
        ),
    )

    # Column orders of imported files, kept so an export reproduces the source layout.
    meta = models.JSONField(default=dict, blank=True)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_studies"
    )
    # Researchers the owner shares the study with, each with a role (annotation.access decides what it allows).
    collaborators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Collaborator", blank=True, related_name="studies"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(scale_max__gt=models.F("scale_min")), name="study_scale_ordered"),
            models.CheckConstraint(condition=Q(scale_step__gte=1), name="study_scale_step_positive"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def scale_mid(self) -> int:
        """The point of the scale nearest its middle (where a slider starts)."""
        step = self.scale_step or 1
        return self.scale_min + round((self.scale_max - self.scale_min) / 2 / step) * step

    def clean(self):
        step = self.scale_step
        if self.scale_max is not None and self.scale_min is not None:
            if self.scale_max <= self.scale_min:
                raise ValidationError({"scale_max": "The maximum must be above the minimum."})
            if not step or step < 1:
                raise ValidationError({"scale_step": "The step must be a whole number of at least 1."})
            if (self.scale_max - self.scale_min) % step:
                raise ValidationError(
                    {"scale_step": f"The step must divide the range {self.scale_min}–{self.scale_max} evenly."}
                )
        if self.min_seconds_per_rating is not None and self.min_seconds_per_rating < 0:
            raise ValidationError({"min_seconds_per_rating": "The minimum time cannot be negative."})
        if not isinstance(self.instruments, list) or not all(isinstance(k, str) for k in self.instruments):
            raise ValidationError({"instruments": "A list of instrument keys, in the order annotators see them."})
        known = set(surveys.instrument_keys())
        unknown = [k for k in self.instruments if k not in known]
        if unknown:
            raise ValidationError(
                {"instruments": f"Unknown instrument(s): {', '.join(unknown)}. Available: {', '.join(sorted(known))}."}
            )
        if len(set(self.instruments)) != len(self.instruments):
            raise ValidationError({"instruments": "Each instrument can appear once."})
        if self.design == self.Design.PARTIAL and not self.prompts_per_annotator:
            raise ValidationError(
                {"prompts_per_annotator": "A partial design needs the number of prompts per annotator."}
            )


class Collaborator(models.Model):
    """A researcher the owner shares a study with, and what they may do (annotation/access.py)."""

    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer: read pages, download data and exports"
        EDITOR = "editor", "Editor: also change the study and its prompts, review annotators, run jobs"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="collaborator_roles")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="collaborations")
    # The least-privileged role unless one is given (`study.collaborators.add(user)` makes a viewer).
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    # A default rather than auto_now_add, so that a restored backup keeps the original time.
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["study", "added_at", "id"]
        constraints = [models.UniqueConstraint(fields=["study", "user"], name="collaborator_once_per_study")]

    def __str__(self) -> str:
        return f"{self.study_id}/{self.user_id}: {self.role}"


class Prompt(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=64)
    text = models.TextField()
    harm_level = models.FloatField(null=True, blank=True)
    features = models.JSONField(default=dict, blank=True)
    harm_benefit_tree = models.JSONField(null=True, blank=True)
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["study", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "external_id"], name="prompt_unique_external_id"),
        ]

    def __str__(self) -> str:
        return f"{self.study.slug}/{self.external_id}"


class Annotator(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "Arrived, not yet consented"
        CONSENTED = "consented"
        SURVEYING = "surveying"
        RATING = "rating"
        COMPLETED = "completed"
        DECLINED = "declined"
        RETURNED = "returned"
        EXCLUDED = "excluded"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="annotators")
    pseudonym = models.CharField(max_length=16)
    # HMAC of the recruitment id (e.g. PROLIFIC_PID); the raw id is never stored.
    recruitment_hash = models.CharField(max_length=64, blank=True)
    # The id a released dataset gave this person (already pseudonymous, e.g. PluriHarms' 0..99).
    source_id = models.CharField(max_length=64, blank=True)
    # Keyed hashes of the platform's STUDY_ID and SESSION_ID: enough to match a submission on the
    # platform given the raw ids, never the ids themselves.
    platform_study_hash = models.CharField(max_length=64, blank=True)
    platform_session_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)

    class Exclusion(models.TextChoices):
        NONE = "", "Not excluded"
        ATTENTION = "attention", "Failed attention checks"
        RESEARCHER = "researcher", "Excluded by a researcher"

    # Why an excluded annotator was excluded, as a code that flows decide on (the failed-checks code is
    # shown for "attention"); `exclusion_reason` is the human-readable detail.
    exclusion = models.CharField(max_length=16, choices=Exclusion.choices, blank=True, default="")
    exclusion_reason = models.CharField(max_length=200, blank=True)
    order_seed = models.BigIntegerField(default=0)
    demographics = models.JSONField(default=dict, blank=True)
    traits = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study", "id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "pseudonym"], name="annotator_unique_pseudonym"),
            models.UniqueConstraint(
                fields=["study", "recruitment_hash"],
                condition=~Q(recruitment_hash=""),
                name="annotator_unique_recruitment",
            ),
        ]
        indexes = [models.Index(fields=["study", "status"])]

    def __str__(self) -> str:
        return f"{self.study.slug}/{self.pseudonym}"


class SurveyInstrument(models.Model):
    """An instrument loaded from annotation/instruments/<key>.json; the JSON file is the source."""

    key = models.SlugField(max_length=64)
    version = models.CharField(max_length=16, default="1")
    title = models.CharField(max_length=200)
    definition = models.JSONField(help_text="Items, response options, reverse keys, subscales, scoring.")

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["key", "version"], name="instrument_unique_version")]

    def __str__(self) -> str:
        return f"{self.key} v{self.version}"


class SurveyResponse(models.Model):
    annotator = models.ForeignKey(Annotator, on_delete=models.CASCADE, related_name="survey_responses")
    instrument = models.ForeignKey(SurveyInstrument, on_delete=models.PROTECT, related_name="responses")
    answers = models.JSONField(default=dict)
    scores = models.JSONField(default=dict)
    submitted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["annotator", "instrument"], name="survey_response_once"),
        ]


class Assignment(models.Model):
    class Kind(models.TextChoices):
        PROMPT = "prompt"
        ATTENTION = "attention", "Attention check"

    # No index of its own: assignment_unique_position (annotator, position) serves lookups by annotator, and
    # every index costs each write (an import writes 1.5 million assignments).
    annotator = models.ForeignKey(Annotator, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    prompt = models.ForeignKey(Prompt, null=True, blank=True, on_delete=models.CASCADE, related_name="assignments")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PROMPT)
    # For attention checks: {"type": "instructional", "text": ..., "expected": 80}.
    check_spec = models.JSONField(null=True, blank=True)
    position = models.PositiveIntegerField(help_text="Trial position in the annotator's sequence.")
    shown_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    check_passed = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["annotator", "position"]
        constraints = [
            models.UniqueConstraint(fields=["annotator", "position"], name="assignment_unique_position"),
            models.UniqueConstraint(
                fields=["annotator", "prompt"], condition=Q(prompt__isnull=False), name="assignment_unique_prompt"
            ),
            models.CheckConstraint(
                condition=(Q(kind="prompt") & Q(prompt__isnull=False)) | (Q(kind="attention") & Q(prompt__isnull=True)),
                name="assignment_kind_matches_prompt",
            ),
        ]


# The largest scale maximum a study can have (scale_max is a PositiveSmallIntegerField).
RATING_VALUE_MAX = 32767


class Rating(models.Model):
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="rating")
    # Denormalized from the assignment so the one-rating-per-annotator-and-prompt rule is a database
    # constraint and reads need no join.
    # No index of its own: rating_once_per_prompt (annotator, prompt) serves lookups by annotator.
    annotator = models.ForeignKey(Annotator, on_delete=models.CASCADE, related_name="ratings", db_index=False)
    prompt = models.ForeignKey(Prompt, null=True, blank=True, on_delete=models.CASCADE, related_name="ratings")
    value = models.FloatField(null=True, blank=True)
    unsure = models.BooleanField(default=False)
    rt_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Active time measured in the browser.")
    server_rt_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Shown-to-saved time on the server.")
    idempotency_key = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Over every row (an attention check's NULL prompt never conflicts: NULLs are distinct), so
            # that it is also the index for lookups by annotator.
            models.UniqueConstraint(fields=["annotator", "prompt"], name="rating_once_per_prompt"),
            models.CheckConstraint(
                # The study's own scale (Study.scale_min..scale_max) is checked by the rating service,
                # which reads the study; a check constraint sees only this row, so it holds the widest
                # scale any study can have.
                condition=(Q(unsure=True) & Q(value__isnull=True))
                | (Q(unsure=False) & Q(value__gte=0) & Q(value__lte=RATING_VALUE_MAX)),
                name="rating_value_or_unsure",
            ),
            # Partial: imported ratings have no key, and need no index entry.
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="rating_unique_idempotency_key",
            ),
        ]


def upload_path(instance: "Upload", filename: str) -> str:
    # The stored name is ours (a random token), never the client's file name.
    return f"uploads/study-{instance.study_id}/{instance.kind}/{instance.token}.bin"


class Upload(models.Model):
    """A file a researcher sent, kept under the study. Jobs refer to it by id, never by path."""

    class Kind(models.TextChoices):
        PREDICTIONS = "predictions", "Model predictions (CSV)"
        PROMPTS = "prompts", "Prompt bank (CSV, JSONL or release prompts.csv)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="uploads")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    token = models.CharField(max_length=32, unique=True)
    file = models.FileField(upload_to=upload_path, max_length=300)
    original_name = models.CharField(max_length=200, blank=True)
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["study", "kind"])]

    def __str__(self) -> str:
        return f"{self.study_id}/{self.kind}/{self.pk}"


class AnnotatorStatusChange(models.Model):
    """One review decision on an annotator (excluded or reinstated by a researcher), kept for good: the
    annotator's page shows the history, and a reinstatement restores the status recorded here."""

    annotator = models.ForeignKey(Annotator, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=16, choices=Annotator.Status.choices)
    to_status = models.CharField(max_length=16, choices=Annotator.Status.choices)
    reason = models.CharField(max_length=200)
    # The exclusion reason this decision replaced (e.g. "failed 2 attention checks" on reinstating).
    previous_reason = models.CharField(max_length=200, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["annotator", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.annotator}: {self.from_status} -> {self.to_status}"


class RatingRevision(models.Model):
    """The one change an annotator may make to their previous answer, from the next card (undo). The
    rating then holds the final answer; this row keeps the original beside it, so both are kept and
    exports can say which ratings were revised (annotation/services/revision.py)."""

    rating = models.OneToOneField(Rating, on_delete=models.CASCADE, related_name="revision")
    original_value = models.FloatField(null=True, blank=True)
    original_unsure = models.BooleanField(default=False)
    original_rt_ms = models.PositiveIntegerField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True)
    unsure = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(original_unsure=True) & Q(original_value__isnull=True))
                | (Q(original_unsure=False) & Q(original_value__isnull=False)),
                name="revision_original_value_or_unsure",
            ),
            models.CheckConstraint(
                condition=(Q(unsure=True) & Q(value__isnull=True)) | (Q(unsure=False) & Q(value__isnull=False)),
                name="revision_value_or_unsure",
            ),
        ]

    def __str__(self) -> str:
        return f"rating {self.rating_id}: {self.original_value} -> {self.value}"
