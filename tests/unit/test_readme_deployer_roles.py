"""The README's table of the deployer's roles is playbooks/vars/deployer.yml, the list the preflight checks."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_readme_lists_exactly_the_deployer_roles_the_preflight_checks():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### The deployer's roles", 1)[1].split("\n### ", 1)[0]
    table = dict(re.findall(r"^\| (roles/[A-Za-z0-9_.]+) \| (.+?) \|$", section, re.M))
    deployer = yaml.safe_load((ROOT / "playbooks" / "vars" / "deployer.yml").read_text())
    assert table == deployer["deployer_roles"]
    granting = {entry["role"] for entry in deployer["deployer_permissions"]}
    assert granting == set(table), "every role grants a permission the run needs, and only those roles do"
