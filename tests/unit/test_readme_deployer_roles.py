"""The deployer's roles in the README's table and in the new-project guide are playbooks/vars/deployer.yml, the
list the preflight checks."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "docsite" / "rst" / "guide_deploy_new_project.rst"


def deployer():
    return yaml.safe_load((ROOT / "playbooks" / "vars" / "deployer.yml").read_text())


def test_readme_lists_exactly_the_deployer_roles_the_preflight_checks():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### The deployer's roles", 1)[1].split("\n### ", 1)[0]
    table = dict(re.findall(r"^\| (roles/[A-Za-z0-9_.]+) \| (.+?) \|$", section, re.M))
    listed = deployer()
    assert table == listed["deployer_roles"]
    granting = {entry["role"] for entry in listed["deployer_permissions"]}
    assert granting == set(table), "every role grants a permission the run needs, and only those roles do"


def test_the_guide_lists_exactly_the_deployer_roles_the_preflight_checks():
    section = GUIDE.read_text().split("The deployer's roles\n", 1)[1].split("\nA minimal inventory\n", 1)[0]
    table = dict(re.findall(r"^  \* - ``(roles/[A-Za-z0-9_.]+)``\n    - (.+)$", section, re.M))
    assert table == deployer()["deployer_roles"]
