"""An environment's settings as the playbooks see them: the collection's defaults (roles/common) with the
inventory's group_vars/all.yml over them. Values are as written: templates are not rendered."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = ROOT / "roles" / "common" / "defaults" / "main.yml"
ENVIRONMENTS = ("local", "dev", "staging", "prod")


def group_vars(env):
    """What inventories/<env> sets itself."""
    return yaml.safe_load((ROOT / "inventories" / env / "group_vars" / "all.yml").read_text())


def settings(env="local"):
    return dict(yaml.safe_load(DEFAULTS.read_text()), **group_vars(env))
