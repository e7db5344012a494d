"""`make local` from a checkout PostgreSQL's service user cannot enter (a clone under /root, mode 0700)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.standins import services
from tests.standins.postgres import PostgresServer


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as its own service user")
def test_a_checkout_postgres_cannot_enter_keeps_its_cluster_where_postgres_can(tmp_path):
    home = tmp_path / "root-home"
    home.mkdir()
    os.chmod(home, 0o700)
    state = home / "checkout" / ".local"
    state.mkdir(parents=True)

    directory = services.postgres_dir(state)
    try:
        link = state / "postgres"
        assert link.is_symlink() and link.resolve() == directory, "the checkout says where the cluster is"
        assert home not in directory.parents
        server = PostgresServer(directory, services.free_port()).init().start()
        try:
            assert server.running()
            server.create_role("mlflow", "a-password")
            assert services.postgres_dir(state) == directory  # the next `make local` finds the same cluster
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory.parent, ignore_errors=True)


def test_a_reachable_checkout_keeps_its_cluster_inside():
    top = Path(tempfile.mkdtemp(prefix="checkout-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)  # as a clone under /tmp or /home/<user> usually is
        state = top / ".local"
        state.mkdir()
        assert services.postgres_dir(state) == state / "postgres"
        assert not (state / "postgres").is_symlink()
    finally:
        shutil.rmtree(top)
