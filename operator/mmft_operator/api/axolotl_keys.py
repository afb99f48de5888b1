"""Which Axolotl config key each typed field of spec.training sets: one declaration per field.

The renderer (builders/axolotl_config.py) writes each key from its field, in this order; the API refuses the same
keys in spec.training.overrides (RESERVED_OVERRIDE_KEYS: an override would silently fight the typed value) and
points at the field; the tests hold the trainer's checks of raw Axolotl YAML (mmft_trainer.config_rules) to accept
every value the field accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TypedKey:
    key: str  # Axolotl's config key
    field: str  # attribute path under spec.training (TrainingSettings), e.g. "lora.r"
    json_type: str  # the key's JSON type, declared in the CRD so CEL can refuse it in overrides

    def read(self, training: Any) -> Any:
        """The field's value in ``training`` (a TrainingSettings, or TrackingSettings for TRACKING_KEYS); None when
        a block on the way is unset."""
        value = training
        for name in self.field.split("."):
            if value is None:
                return None
            value = getattr(value, name)
        return value


TYPED_KEYS: tuple[TypedKey, ...] = (
    TypedKey("adapter", "adapter", "string"),
    TypedKey("load_in_4bit", "load_in_4bit", "boolean"),
    TypedKey("load_in_8bit", "load_in_8bit", "boolean"),
    TypedKey("lora_r", "lora.r", "integer"),
    TypedKey("lora_alpha", "lora.alpha", "integer"),
    TypedKey("lora_dropout", "lora.dropout", "number"),
    TypedKey("lora_target_modules", "lora.target_modules", "string"),
    TypedKey("sequence_len", "sequence_len", "integer"),
    TypedKey("optimizer", "optimizer", "string"),
    TypedKey("lr_scheduler", "lr_scheduler", "string"),
    TypedKey("learning_rate", "learning_rate", "number"),
    TypedKey("weight_decay", "weight_decay", "number"),
    TypedKey("max_steps", "max_steps", "integer"),
    TypedKey("num_epochs", "num_epochs", "integer"),
    TypedKey("warmup_steps", "warmup_steps", "integer"),
    TypedKey("gradient_checkpointing", "gradient_checkpointing", "boolean"),
    TypedKey("gradient_accumulation_steps", "gradient_accumulation_steps", "integer"),
    TypedKey("micro_batch_size", "micro_batch_size", "integer"),
    TypedKey("save_strategy", "save_strategy", "string"),
    TypedKey("save_steps", "save_steps", "integer"),
    TypedKey("save_total_limit", "save_total_limit", "integer"),
    TypedKey("chat_template", "chat_template", "string"),
    TypedKey("attn_implementation", "attention_implementation", "string"),
    TypedKey("image_size", "image_size", "integer"),
    TypedKey("image_resize_algorithm", "image_resize_algorithm", "string"),
    TypedKey("logging_steps", "logging_steps", "integer"),
    TypedKey("seed", "seed", "integer"),
)

# The non-secret settings of spec.tracking (TrackingSettings), each under its Axolotl key. The field path starts at
# spec.tracking; a run name left empty takes the FineTuneJob's name. Credentials have no key here: they reach the
# trainer as environment variables from Secrets only (builders/finetunejob.py).
TRACKING_KEYS: tuple[TypedKey, ...] = (
    TypedKey("wandb_project", "wandb.project", "string"),
    TypedKey("wandb_entity", "wandb.entity", "string"),
    TypedKey("wandb_name", "wandb.run_name", "string"),
    TypedKey("mlflow_tracking_uri", "mlflow.tracking_uri", "string"),
    TypedKey("mlflow_experiment_name", "mlflow.experiment_name", "string"),
    TypedKey("mlflow_run_name", "mlflow.run_name", "string"),
)
