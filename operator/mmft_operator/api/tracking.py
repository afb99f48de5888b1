"""Experiment tracking of a FineTuneJob: Weights & Biases or MLflow, credentials by Secret reference only.

Non-secret settings become Axolotl config keys (api/axolotl_keys.TRACKING_KEYS); credentials reach the trainer only
as environment variables from secretKeyRef, so they never land in the rendered ConfigMap, in status or in events.
There is deliberately no field that takes a key as a string.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from .common import ApiModel, SecretKeySelector, cel, validations

_NAME = r"^[^\x00\n]+$"
_HTTP_URL = r"^https?://[^\s]+$"


class WandbTracking(ApiModel):
    """Weights & Biases: Axolotl's wandb_project, wandb_entity and wandb_name; the API key as WANDB_API_KEY."""

    project: str = Field(description="W&B project (wandb_project).", min_length=1, max_length=128, pattern=_NAME)
    entity: str | None = Field(None, description="W&B team or user (wandb_entity).", max_length=128, pattern=_NAME)
    run_name: str | None = Field(
        None, description="Run name (wandb_name). Empty: the FineTuneJob's name.", max_length=128, pattern=_NAME
    )
    base_url: str | None = Field(
        None, description="Self-hosted W&B server (WANDB_BASE_URL). Empty: wandb.ai.", max_length=1024,
        pattern=_HTTP_URL,
    )
    api_key_secret_ref: SecretKeySelector = Field(
        description="Secret key holding the W&B API key, passed as WANDB_API_KEY (never stored in the spec)."
    )


class MlflowTracking(ApiModel):
    """MLflow: Axolotl's mlflow_tracking_uri, mlflow_experiment_name and mlflow_run_name; credentials from Secrets."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.usernameSecretRef) == has(self.passwordSecretRef)",
                "usernameSecretRef and passwordSecretRef go together",
                field_path=".passwordSecretRef",
            ),
        )
    }

    tracking_uri: str = Field(
        description="MLflow tracking server (mlflow_tracking_uri), e.g. https://mlflow.example.com.",
        max_length=1024,
        pattern=_HTTP_URL,
    )
    experiment_name: str = Field(
        description="MLflow experiment (mlflow_experiment_name).", min_length=1, max_length=256, pattern=_NAME
    )
    run_name: str | None = Field(
        None, description="Run name (mlflow_run_name). Empty: the FineTuneJob's name.", max_length=256, pattern=_NAME
    )
    token_secret_ref: SecretKeySelector | None = Field(
        None, description="Secret key with a bearer token, passed as MLFLOW_TRACKING_TOKEN."
    )
    username_secret_ref: SecretKeySelector | None = Field(
        None, description="Secret key with a basic-auth user name, passed as MLFLOW_TRACKING_USERNAME."
    )
    password_secret_ref: SecretKeySelector | None = Field(
        None, description="Secret key with a basic-auth password, passed as MLFLOW_TRACKING_PASSWORD."
    )

    @model_validator(mode="after")
    def _basic_auth_pair(self) -> MlflowTracking:
        if (self.username_secret_ref is None) != (self.password_secret_ref is None):
            raise ValueError("usernameSecretRef and passwordSecretRef go together")
        return self


class TrackingSettings(ApiModel):
    """Where the trainer logs metrics besides TensorBoard. Either or both."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("has(self.wandb) || has(self.mlflow)", "tracking needs wandb or mlflow"),
        )
    }

    wandb: WandbTracking | None = Field(None, description="Weights & Biases.")
    mlflow: MlflowTracking | None = Field(None, description="MLflow.")

    @model_validator(mode="after")
    def _one_at_least(self) -> TrackingSettings:
        if self.wandb is None and self.mlflow is None:
            raise ValueError("tracking needs wandb or mlflow")
        return self
