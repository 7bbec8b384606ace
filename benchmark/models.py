"""Candidate pools for prompt curation (issue 12): a study's researchers upload seed prompts or candidates
into a pool, describe them (harm level, features, harm-benefit tree, value topic) and choose a subset.

A pool belongs to a study, so who may see or change it is who may see or change the study
(annotation.access); its selections are Jobs of that study. Writes go through benchmark/pools.py.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class CandidatePool(models.Model):
    study = models.ForeignKey("annotation.Study", on_delete=models.CASCADE, related_name="candidate_pools")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # Loose settings of the pool's jobs (e.g. the researcher's instruction templates), keyed by job kind.
    meta = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} (pool #{self.pk})"


class ValueTopic(models.Model):
    """One cluster of the pool's MiniLM embeddings; `number` is its feature column (`value_topic_<number>`),
    `name` what the researcher calls it (first: its most distinctive words)."""

    pool = models.ForeignKey(CandidatePool, on_delete=models.CASCADE, related_name="topics")
    number = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    words = models.JSONField(default=list, blank=True, help_text="Most distinctive words, best first.")
    size = models.PositiveIntegerField(default=0, help_text="Candidates in the topic.")

    class Meta:
        ordering = ["pool", "number"]
        constraints = [models.UniqueConstraint(fields=["pool", "number"], name="value_topic_unique_number")]

    def __str__(self) -> str:
        return f"{self.number}: {self.name}"


class Candidate(models.Model):
    class Source(models.TextChoices):
        UPLOADED = "uploaded", "Uploaded"
        VARIANT = "variant", "Generated variant"

    pool = models.ForeignKey(CandidatePool, on_delete=models.CASCADE, related_name="candidates")
    external_id = models.CharField(max_length=64)
    text = models.TextField()
    harm_level = models.FloatField(null=True, blank=True, help_text="0–1; empty for a seed not yet graded.")
    # The seed group: at most `max_per_group` candidates of one group are chosen; blank: its own group.
    group = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.UPLOADED)
    # The candidate a generated variant was made from (None for an uploaded one).
    seed = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="variants")
    # action_* (16), effect_* (7) shares and value_topic_* as uploaded or derived from the tree.
    features = models.JSONField(default=dict, blank=True)
    harm_benefit_tree = models.JSONField(null=True, blank=True)
    topic = models.ForeignKey(ValueTopic, null=True, blank=True, on_delete=models.SET_NULL, related_name="candidates")
    # float32 MiniLM embedding (384 × 4 bytes) of the text, kept so that reclustering does not re-embed.
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    order = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pool", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["pool", "external_id"], name="candidate_unique_external_id"),
            models.CheckConstraint(
                condition=Q(harm_level__isnull=True) | Q(harm_level__gte=0, harm_level__lte=1),
                name="candidate_harm_level_0_1",
            ),
        ]
        indexes = [
            models.Index(fields=["pool", "harm_level"], name="candidate_pool_level"),
            models.Index(fields=["pool", "group"], name="candidate_pool_group"),
        ]

    def __str__(self) -> str:
        return f"pool {self.pool_id}/{self.external_id}"
