"""Persistent state: providers and their models, conversations as trees of messages, attachments; and for the
admin: per-user quotas, personal provider keys, the audit log and the usage of deleted conversations."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q

from conversations import crypto

MILLION = Decimal(1_000_000)


class EncryptedKeyMixin:
    """An API key kept in `api_key_encrypted` (Fernet, see crypto.py). Shared by provider and personal keys."""

    api_key_encrypted: str

    @property
    def api_key(self) -> str:
        """The decrypted key. Only the code that builds routes should read it; never render or log it."""
        return crypto.decrypt(self.api_key_encrypted)

    @api_key.setter
    def api_key(self, value: str) -> None:
        self.api_key_encrypted = crypto.encrypt(value)

    @property
    def api_key_hint(self) -> str:
        """What a person may see of the key: its last four characters."""
        if not self.api_key_encrypted:
            return ""
        try:
            key = self.api_key
        except crypto.DecryptionError:
            return "(unreadable: encryption key changed)"
        return f"…{key[-4:]}" if len(key) > 4 else "…"


class Provider(EncryptedKeyMixin, models.Model):
    """An OpenAI-compatible endpoint and the credentials to call it. The API key is encrypted at rest."""

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        OPENROUTER = "openrouter", "OpenRouter"
        AIMLAPI = "aimlapi", "AI/ML API"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (Ollama, vLLM, llama.cpp, LM Studio, ...)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.OPENAI_COMPATIBLE)
    base_url = models.URLField(
        max_length=500, help_text="Up to and including /v1, e.g. https://api.openai.com/v1"
    )
    api_key_encrypted = models.TextField(blank=True, editable=False)
    organization = models.CharField(max_length=200, blank=True, help_text="OpenAI-Organization header")
    project = models.CharField(max_length=200, blank=True, help_text="OpenAI-Project header")
    extra_headers = models.JSONField(default=dict, blank=True, help_text="Sent with every request")
    enabled = models.BooleanField(default=True)
    priority = models.PositiveIntegerField(
        default=100, help_text="Lower is tried first when models fall back"
    )
    # False only for the row migration 0002 seeds (switched off, no key) until it is set up, by manage.py
    # bootstrap from the environment or by an admin. From then on the environment only updates its key: its
    # switch, base URL and priority are the admin's, with or without a key (catalog.bootstrap_from_environment).
    configured = models.BooleanField(default=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return self.name


class ChatModelQuerySet(models.QuerySet):
    def available(self) -> ChatModelQuerySet:
        """Models a user may pick: enabled, on an enabled provider."""
        return self.filter(enabled=True, provider__enabled=True)

    def open_to(self, user) -> ChatModelQuerySet:
        """Models `user` may use: those restricted to no group, or to a group of theirs. Superusers use all.
        Subqueries rather than a join, so a model in two of the user's groups is not listed twice."""
        if getattr(user, "is_superuser", False):
            return self.all()
        through = ChatModel.allowed_groups.through
        restricted = through.objects.filter(chatmodel_id=OuterRef("pk"))
        mine = restricted.filter(group__user=user) if user is not None else restricted.none()
        return self.filter(~Exists(restricted) | Exists(mine))


class ChatModel(models.Model):
    """One provider's copy of a model: a route. The model people pick is the `canonical_id` its copies share
    (GPT-4o is `gpt-4o` on OpenAI and AI/ML API, `openai/gpt-4o` on OpenRouter); they are tried in their
    providers' priority order. A canonical id only one provider serves is that provider's own model."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    model_id = models.CharField(max_length=200, help_text="The id the provider expects, e.g. openai/gpt-4o")
    canonical_id = models.CharField(
        max_length=200,
        db_index=True,
        help_text="Same value on every provider's copy of one model, e.g. gpt-4o",
    )
    display_name = models.CharField(max_length=200)
    supports_images = models.BooleanField(default=False)
    context_window = models.PositiveIntegerField(default=8192)
    max_output_tokens = models.PositiveIntegerField(default=4096)
    # The verbose names carry the unit: they are the admin's column headers.
    input_price = models.DecimalField(
        "input $ / 1M tokens",
        max_digits=12,
        decimal_places=4,
        default=Decimal(0),
        help_text="USD per 1M input tokens",
    )
    cached_input_price = models.DecimalField(
        "cached input $ / 1M tokens",
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="USD per 1M cached input tokens. Empty: the input price.",
    )
    output_price = models.DecimalField(
        "output $ / 1M tokens",
        max_digits=12,
        decimal_places=4,
        default=Decimal(0),
        help_text="USD per 1M output tokens",
    )
    retired_on = models.DateField(null=True, blank=True, help_text="When the provider withdrew it, if it did")
    enabled = models.BooleanField(default=True)
    allowed_groups = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="chat_models",
        help_text="Only members of these groups may pick this model. None selected: everyone may.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ChatModelQuerySet.as_manager()

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model_id"], name="chatmodel_unique_per_provider"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.provider.name})"  # reads provider: one query if not loaded

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Decimal:
        """USD for one call. Cached prompt tokens are billed at the cached price when the model has one."""
        cached = min(cached_tokens, prompt_tokens)
        cached_price = self.cached_input_price if self.cached_input_price is not None else self.input_price
        total = (
            (prompt_tokens - cached) * self.input_price
            + cached * cached_price
            + completion_tokens * self.output_price
        )
        return (total / MILLION).quantize(Decimal("0.000001"))


def default_params() -> dict:
    return {}


class CatalogStamp(models.Model):
    """One row: a token replaced, in the same transaction, whenever the model catalogue changes (models,
    providers and their keys, group restrictions, the site default). Each process keeps the catalogue in
    memory and re-reads it when the token differs (services/model_choices.py): one tiny read per use instead
    of the catalogue's queries, and a change made in any process is seen by all of them at once."""

    token = models.CharField(max_length=32)

    class Meta:
        verbose_name = "catalogue stamp"

    def __str__(self) -> str:
        return self.token


class SiteSettings(models.Model):
    """Site-wide choices an admin makes in the admin (one row, `load()`)."""

    default_model = models.CharField(
        max_length=200,
        blank=True,
        help_text="The canonical id of the model new chats start with, e.g. gpt-4o. Empty: CHAT_DEFAULT_MODEL.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "site settings"

    def __str__(self) -> str:
        return "Site settings"

    @classmethod
    def load(cls) -> SiteSettings:
        """The one row, created on first use. One query (two the first time)."""
        row, _ = cls.objects.get_or_create(pk=1)
        return row

    @classmethod
    def default_model_id(cls) -> str:
        """The site default as a canonical id: the admin's choice, else CHAT_DEFAULT_MODEL, else gpt-4o."""
        chosen = cls.objects.filter(pk=1).values_list("default_model", flat=True).first()
        return chosen or settings.CHAT_DEFAULT_MODEL or "gpt-4o"


class Conversation(models.Model):
    """One chat. Its messages form a tree (edits and regenerations are siblings); `current_leaf` marks the
    tip of the branch the user is looking at."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    # The title is the first prompt's opening words, shown at once; the title model's title replaces it (a
    # rename by the user does not, and clears this). Nullable (null: not provisional) so that adding it is a
    # plain ALTER TABLE ADD COLUMN: SQLite would otherwise rebuild the table under 0005's search triggers.
    title_provisional = models.BooleanField(null=True, blank=True)
    # The model the chat continues with, as people pick it (a canonical id): any provider serving it may answer.
    canonical_model = models.CharField(max_length=200, blank=True)
    # The copy its last turn was routed to first; with `model_pinned` (an admin's choice) the only route.
    model = models.ForeignKey(ChatModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_pinned = models.BooleanField(
        "pinned to this provider's copy",
        default=False,
        help_text="Answer only through the copy above, never another provider's.",
    )
    system_prompt = models.TextField(blank=True)
    # temperature, top_p, max_tokens, presence_penalty, frequency_penalty, seed, json_mode
    params = models.JSONField(default=default_params, blank=True)
    pinned = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Soft delete: hidden everywhere at once, restorable until CHAT_DELETED_RETENTION_DAYS, then purged.
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Where an imported conversation came from ("chatgpt:<id>", "chatsite:<uuid>", ...): importing it again
    # adds only what is new. Empty for conversations started here.
    source_id = models.CharField(max_length=300, blank=True)
    # Set while an import is writing it: the row is hidden (deleted_at is set too) until the import publishes
    # it in one step, or removed if the import fails (services/imports/writer.py).
    import_job = models.ForeignKey(
        "ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-pinned", "-updated_at"]
        indexes = [
            # The sidebar: one user's live conversations, pinned first, newest first.
            models.Index(fields=["owner", "archived", "-pinned", "-updated_at"], name="conv_sidebar_idx"),
            models.Index(fields=["owner", "source_id"], name="conv_source_idx", condition=~Q(source_id="")),
            # A user's conversations touched since a moment ago: the turns-per-minute limit counts the answers
            # of those only (plain_reads.recent_answers), not of every conversation they ever had.
            models.Index(fields=["owner", "updated_at"], name="conv_owner_updated_idx"),
        ]

    def __str__(self) -> str:
        return self.title or "New chat"


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        CANCELLED = "cancelled", "Cancelled"
        ERROR = "error", "Error"
        INTERRUPTED = "interrupted", "Interrupted"

    ACTIVE_STATUSES = (Status.PENDING, Status.STREAMING)

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True)
    # The technical side of `error` (exception class, status, upstream detail): for staff and the log, never
    # shown to an ordinary user. Nullable so SQLite adds the column in place (no table rebuild under the
    # search triggers of migration 0005).
    error_detail = models.TextField(null=True, blank=True)  # noqa: DJ001 - see above
    finish_reason = models.CharField(max_length=32, blank=True)
    # What served the answer. Names are kept as text too, so history survives a deleted provider or model.
    model = models.ForeignKey(ChatModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=200, blank=True)
    provider = models.ForeignKey(Provider, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    provider_name = models.CharField(max_length=100, blank=True)
    # Served through the user's own provider key: the cost is theirs, outside the site's quotas and spend.
    own_key = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    cached_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # Refreshed while a generation runs; a stale heartbeat means the process that owned it died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Budget held back for this answer while it runs (estimated cost); settled to `cost` when it ends.
    reserved_cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    # Tokens held back for this answer's token quota; counts only while reserved_cost is set (until it ends).
    reserved_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Older turns were left out of the prompt to fit the model's context window.
    context_trimmed = models.BooleanField(default=False)
    # The import that wrote it. An imported answer keeps its figures for display but never counts toward
    # quotas, usage or provider uptime; a failed import removes the rows it wrote by this.
    imported_by = models.ForeignKey(
        "ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="msg_conv_created_idx"),
            models.Index(
                fields=["imported_by"], name="msg_imported_by_idx", condition=Q(imported_by__isnull=False)
            ),
            # Answers being written, by conversation: a turn's checks (is the conversation busy, how many
            # answers its user has running) read these few rows, not the conversation's or user's history.
            # Queries must spell the statuses out as literals for the index to apply (plain_reads).
            models.Index(
                fields=["conversation"],
                name="msg_conv_active_idx",
                condition=Q(status__in=["pending", "streaming"]),
            ),
            # The sweep for generations whose process died looks only at the few unfinished rows.
            models.Index(
                fields=["heartbeat_at"],
                name="msg_active_heartbeat_idx",
                condition=Q(status__in=["pending", "streaming"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:50]}"

    @property
    def tokens_per_second(self) -> float | None:
        if not self.completion_tokens or not self.duration_ms:
            return None
        generating_ms = self.duration_ms - (self.ttft_ms or 0)
        if generating_ms <= 0:
            return None
        return round(self.completion_tokens / (generating_ms / 1000), 1)


def attachment_path(instance: Attachment, filename: str) -> str:
    # Files are named by the sha256 of their stored bytes (one file per owner and content, shared by that
    # owner's rows), never by the uploaded name, and sharded by owner. `filename` only gives the extension.
    extension = filename.rsplit(".", 1)[-1] if "." in filename else "bin"
    return f"attachments/{instance.owner_id}/{instance.sha256}.{extension}"


class Attachment(models.Model):
    """An uploaded image. Uploaded before the turn is sent, so it belongs to its owner until attached."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    file = models.FileField(upload_to=attachment_path, max_length=300)
    mime = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    bytes = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    # Where the user put it among its message's images (uploads finish in any order, so created_at can't say).
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.mime} {self.width}x{self.height}"


class SharedConversation(models.Model):
    """A read-only public link to one conversation: the active branch as it was when shared, copied into
    `snapshot` (title and role/content pairs only), so later turns, names and ids never leak through it."""

    token = models.CharField(max_length=64, unique=True)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shares")
    snapshot = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Share #{self.pk}"


class ImportJob(models.Model):
    """One uploaded file being imported in the background; the page polls it for progress and the report."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"  # waiting for one of CHAT_IMPORT_CONCURRENCY places
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # The uploaded file, kept in CHAT_IMPORT_DIR until the job ends; the worker refreshes `heartbeat_at`, so
    # a job whose process died is found by the sweep and undone.
    path = models.CharField(max_length=500, blank=True)
    name = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # How far through the file the worker has read, in thousandths (the file's size is known, its count of
    # conversations is not until the end: it is read as a stream).
    progress = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Import #{self.pk} ({self.status})"


# --- Administration: quotas, personal keys, audit log, usage of deleted conversations -------------------------


class UserQuota(models.Model):
    """One user's limits, overriding the site defaults (CHAT_USER_* settings). Empty: the site default;
    0: no limit. Absent row: every limit is the site default."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota")
    daily_budget = models.DecimalField("USD per day", max_digits=10, decimal_places=2, null=True, blank=True)
    monthly_budget = models.DecimalField(
        "USD per month", max_digits=10, decimal_places=2, null=True, blank=True
    )
    daily_tokens = models.PositiveBigIntegerField("tokens per day", null=True, blank=True)
    monthly_tokens = models.PositiveBigIntegerField("tokens per month", null=True, blank=True)
    turns_per_minute = models.PositiveIntegerField("messages per minute", null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "quota"

    def __str__(self) -> str:
        return f"Quota of user #{self.user_id}"


class CustomInstructions(models.Model):
    """What a person tells the assistant about themselves and how it should respond, for every chat (as in
    ChatGPT): the first system message of each prompt while `enabled`. Absent row: none."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="custom_instructions"
    )
    about_user = models.TextField("What should the assistant know about you?", blank=True, max_length=1500)
    response_style = models.TextField("How should it respond?", blank=True, max_length=1500)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "custom instructions"

    def __str__(self) -> str:
        return f"Custom instructions of user #{self.user_id}"


class PersonalKey(EncryptedKeyMixin, models.Model):
    """A user's own API key for a provider (CHAT_ALLOW_PERSONAL_KEYS), used only for that user's turns.
    Encrypted like provider keys; never shown back beyond its last four characters."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_keys")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="personal_keys")
    api_key_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__priority", "provider__name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "provider"], name="personalkey_one_per_provider")
        ]

    def __str__(self) -> str:
        return f"Personal key #{self.pk}"


class AuditEntry(models.Model):
    """Who did what to keys, users, quotas and models, and when. Never holds a secret: changes are recorded
    as field names, and values only for fields that are not secret (quotas, flags)."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(
        "by", max_length=150, blank=True, help_text="Kept if the account is deleted"
    )
    action = models.CharField(max_length=64, db_index=True)  # e.g. provider.changed, user.activated
    target_type = models.CharField("type", max_length=64, blank=True)
    target_id = models.CharField("target id", max_length=64, blank=True)
    target_repr = models.CharField("target", max_length=200, blank=True)
    summary = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_name or 'system'} {self.action} {self.target_repr}"


class DeletedUsage(models.Model):
    """Usage of conversations that were deleted, per user, day, model and provider, folded in when they go:
    quotas keep counting it (deleting chats must not refill a budget) and the dashboard keeps its totals.
    `user_id` is a plain number, not a foreign key, so the rows can be written in the middle of a cascade."""

    user_id = models.BigIntegerField(null=True)
    username = models.CharField(max_length=150, blank=True)
    day = models.DateField()
    model_name = models.CharField(max_length=200, blank=True)
    provider_name = models.CharField(max_length=100, blank=True)
    own_key = models.BooleanField(
        default=False
    )  # answers served through the user's own key (Message.own_key)
    turns = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=6, default=Decimal(0))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["user_id", "day"], name="deletedusage_user_day_idx"),
            models.Index(fields=["day"], name="deletedusage_day_idx"),
        ]
        verbose_name_plural = "deleted usage"

    def __str__(self) -> str:
        return f"{self.username} {self.day} {self.model_name}"
