"""The regions each faked product offers, as Google documents them; anything else gets Google's error.

Kept in one place so that a region Google adds is added once. Checked by run.py (the location in every
Cloud Run path) and sqladmin.py (an instance's `region`).
"""

from __future__ import annotations

# Cloud Run services and jobs: docs "Cloud Run locations" (cloud.google.com/run/docs/locations), Tier 1 and
# Tier 2 pricing lists.
CLOUD_RUN = frozenset((
    # Tier 1
    "asia-east1", "asia-northeast1", "asia-northeast2", "europe-north1", "europe-southwest1", "europe-west1",
    "europe-west4", "europe-west8", "europe-west9", "me-west1", "us-central1", "us-east1", "us-east4", "us-east5",
    "us-south1", "us-west1",
    # Tier 2
    "africa-south1", "asia-east2", "asia-northeast3", "asia-southeast1", "asia-southeast2", "asia-south1",
    "asia-south2", "australia-southeast1", "australia-southeast2", "europe-central2", "europe-west10",
    "europe-west12", "europe-west2", "europe-west3", "europe-west6", "me-central1", "me-central2",
    "northamerica-northeast1", "northamerica-northeast2", "southamerica-east1", "southamerica-west1", "us-west2",
    "us-west3", "us-west4",
))

# Cloud SQL instances: docs "Instance locations" (cloud.google.com/sql/docs/instance-locations) and "Region
# availability" (cloud.google.com/sql/docs/mysql/region-availability-overview).
CLOUD_SQL = frozenset((
    "africa-south1",
    "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3", "asia-south1",
    "asia-south2", "asia-southeast1", "asia-southeast2",
    "australia-southeast1", "australia-southeast2",
    "europe-central2", "europe-north1", "europe-north2", "europe-southwest1", "europe-west1", "europe-west2",
    "europe-west3", "europe-west4", "europe-west6", "europe-west8", "europe-west9", "europe-west10",
    "europe-west12",
    "me-central1", "me-central2", "me-west1",
    "northamerica-northeast1", "northamerica-northeast2", "northamerica-south1",
    "southamerica-east1", "southamerica-west1",
    "us-central1", "us-central2", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1", "us-west2",
    "us-west3", "us-west4",
))
