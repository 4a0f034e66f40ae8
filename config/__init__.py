"""Configuration, read from the environment in one place (12-factor)."""

from config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
