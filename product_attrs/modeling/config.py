"""One mechanism for every model's settings: dataclass -> profile -> overlay -> explicit values.

A frozen dataclass per task holds every hyperparameter with its help text; its defaults are the `full`
profile. A profile (`demo`, `cpu`, `full`, ...) and a named overlay (the recognizer is the classifier
with another catalog's heads and a metric loss) are plain dictionaries, so the command line and the
Dagster asset resolve the same settings from the same data. The command's flags are generated here; the
Dagster Config is generated from the same field specs in `assets.py` (the only place that imports
Dagster).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

#: The key of an overlay's part that applies to every profile.
ANY_PROFILE = "*"


class ConfigError(ValueError):
    """A setting that cannot work; the message says which setting and what is allowed."""


def setting(default: Any, help: str) -> Any:
    """A dataclass field with its help text (shown by --help and in the Dagster launchpad)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: Any
    default: Any
    help: str


def field_specs(cls: type) -> list[FieldSpec]:
    """One spec per dataclass field: what the CLI flags and the Dagster Config are generated from."""
    hints = typing.get_type_hints(cls)
    return [
        FieldSpec(f.name, hints[f.name], f.default, f.metadata.get("help", ""))
        for f in dataclasses.fields(cls)
    ]


@dataclass(frozen=True)
class Profiles:
    """A task's named profiles and overlays: numbers only, never code paths.

    `overlays[name]` maps a profile (or `ANY_PROFILE`) to the values the overlay changes on top of it.
    """

    profiles: dict[str, dict[str, Any]]
    overlays: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    default_profile: str = "demo"

    def values(self, profile: str, overlay: str | None = None) -> dict[str, Any]:
        if profile not in self.profiles:
            raise ConfigError(
                f"unknown profile {profile!r}; choose one of: {', '.join(sorted(self.profiles))}"
            )
        values = dict(self.profiles[profile])
        if overlay:
            if overlay not in self.overlays:
                raise ConfigError(
                    f"unknown overlay {overlay!r}; choose one of: {', '.join(sorted(self.overlays))}"
                )
            parts = self.overlays[overlay]
            values.update(parts.get(ANY_PROFILE, {}))
            values.update(parts.get(profile, {}))
        return values


def resolve(
    cls: type,
    profiles: Profiles,
    profile: str | None = None,
    overlay: str | None = None,
    overrides: dict[str, Any] | None = None,
):
    """The validated config: dataclass defaults, then the profile, the overlay, and explicit values.

    An override of None means "not given" (the profile's value stays); a name the dataclass does not
    have is an error, never silently dropped.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    values = {
        k: v for k, v in profiles.values(profile or profiles.default_profile, overlay).items() if k in names
    }
    for key, value in (overrides or {}).items():
        if key not in names:
            raise ConfigError(f"unknown setting {key!r} for {cls.__name__}")
        if value is not None:
            values[key] = tuple(value) if isinstance(value, list) and _is_tuple(cls, key) else value
    config = cls(**values)
    return config.validate() if hasattr(config, "validate") else config


def _is_tuple(cls: type, name: str) -> bool:
    return typing.get_origin(typing.get_type_hints(cls)[name]) is tuple


def add_arguments(parser: argparse.ArgumentParser, cls: type, profiles: Profiles) -> None:
    """--profile, --overlay and one flag per field; every flag defaults to None (= the profile's value)."""
    group = parser.add_argument_group("hyperparameters (defaults come from --profile and --overlay)")
    group.add_argument(
        "--profile",
        default=profiles.default_profile,
        choices=sorted(profiles.profiles),
        help=f"named settings (default {profiles.default_profile})",
    )
    if profiles.overlays:
        group.add_argument(
            "--overlay",
            default=None,
            choices=sorted(profiles.overlays),
            help="named changes on top of the profile",
        )
    for spec in field_specs(cls):
        flag = "--" + spec.name.replace("_", "-")
        shown = {p: v[spec.name] for p, v in profiles.profiles.items() if spec.name in v}
        help_text = (
            f"{spec.help} (default {spec.default!r}"
            + "".join(f"; {p}: {v!r}" for p, v in shown.items())
            + ")"
        )
        if spec.type is bool:
            group.add_argument(
                flag, dest=spec.name, default=None, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif typing.get_origin(spec.type) is tuple:
            item = typing.get_args(spec.type)[0]
            group.add_argument(flag, dest=spec.name, default=None, type=item, nargs="+", help=help_text)
        else:
            group.add_argument(flag, dest=spec.name, default=None, type=spec.type, help=help_text)


def from_args(args: argparse.Namespace, cls: type, profiles: Profiles, overlay: str | None = None):
    """The config an argparse namespace (built by `add_arguments`) stands for."""
    overrides = {spec.name: getattr(args, spec.name, None) for spec in field_specs(cls)}
    return resolve(cls, profiles, args.profile, getattr(args, "overlay", None) or overlay, overrides)
