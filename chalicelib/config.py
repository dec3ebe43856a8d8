"""Settings, read from the environment in one place (DESIGN.md section 5)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_DATA_DIR = Path(__file__).resolve().parent.parent / ".local"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    allow_faults: bool = Field(default=False, alias="SAGA_ALLOW_FAULTS")
    purchase_state_machine_arn: str | None = Field(default=None, alias="PURCHASE_STATE_MACHINE_ARN")
    return_state_machine_arn: str | None = Field(default=None, alias="RETURN_STATE_MACHINE_ARN")
    aws_endpoint_url: str | None = Field(default=None, alias="AWS_ENDPOINT_URL")
    status_ttl_seconds: int = Field(default=86_400, alias="SAGA_STATUS_TTL_SECONDS")
    return_window_days: int = Field(default=30, alias="SAGA_RETURN_WINDOW_DAYS")

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        LOCAL_DATA_DIR.mkdir(exist_ok=True)
        return f"sqlite:///{LOCAL_DATA_DIR / 'saga.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
