"""Worked example: bring your own model, a binary churn classifier on features of every type.

    python -m examples.churn            # the example (examples/churn/example.py); --help for its options
    python -m examples.churn.generate   # writes customers.csv again, the same bytes (seeded)

The data set is generated (generate.py) and shipped next to this file (customers.csv), so nothing is
downloaded. What it declares is here, once: the columns, as the inventory's mlops_features and mlops_label
(examples/churn/inventory/group_vars/all.yml) declare them to site.yml, the serving API and the drift job.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "customers.csv"
INVENTORY = Path(__file__).resolve().parent / "inventory"

PLANS = ("basic", "standard", "premium")
CONTRACTS = ("month_to_month", "one_year", "two_year")
PAYMENT_METHODS = ("bank_transfer", "credit_card", "electronic_check", "mailed_check")

# offline_features column -> what mlops_features says of it. `categories` are the values a STRING feature may
# take; `unknown: allow` serves other values (counted), the default refuses them with a 422.
FEATURES = {
    "plan": {"type": "STRING", "categories": list(PLANS)},
    "contract_type": {"type": "STRING", "categories": list(CONTRACTS)},
    "payment_method": {"type": "STRING", "categories": list(PAYMENT_METHODS), "unknown": "allow"},
    "tenure_months": {"type": "INTEGER"},
    "monthly_charges": {"type": "FLOAT"},
    "support_calls": {"type": "INTEGER"},
    "has_support": {"type": "BOOLEAN"},
}
LABEL = {"name": "churned", "type": "INTEGER", "task": "classification", "classes": [0, 1], "positive_class": 1}
ENTITY_PREFIX = "customer-"
# The split column of customers.csv: train and test are history (offline_features), serving the customers
# seen after the training window (sent to the serving API, their outcome known days later).
SPLITS = ("train", "test", "serving")
