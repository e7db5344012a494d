"""Generate examples/churn/customers.csv: subscription customers, their features and whether they churned.

    .venv/bin/python -m examples.churn.generate [--output PATH]

Seeded, so the file it writes is the one checked in (tests/apps/test_churn_example.py checks that). The rows:

 - history (split train / test, 70 / 30 at random): customers of the training window, with every feature type
   the pipeline handles: plan, contract_type and payment_method (STRING), tenure_months and support_calls
   (INTEGER), monthly_charges (FLOAT), has_support (BOOLEAN), and churned (0 / 1);
 - serving: customers seen after the training window. One thing changed since: a promotion of monthly
   contracts, so the share of month_to_month contracts rose from about 45 % to about 75 %. Every other feature
   is drawn as before, independently of the contract, so contract_type is the feature that drifts (and the
   churn rate rises with it, since month-to-month customers leave more often).

Churn follows a logistic model of the features (the coefficients below), so a logistic regression can learn it
and does about as well as can be done.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from examples.churn import CONTRACTS, DATA, ENTITY_PREFIX, FEATURES, LABEL, PAYMENT_METHODS, PLANS

SEED = 20250611
HISTORY_ROWS = 2400
SERVING_ROWS = 800
TEST_SHARE = 0.3
PLAN_SHARES = (0.45, 0.35, 0.20)
CONTRACT_SHARES = {"history": (0.45, 0.30, 0.25), "serving": (0.75, 0.15, 0.10)}
PAYMENT_SHARES = (0.25, 0.25, 0.35, 0.15)
SUPPORT_SHARE = 0.4
BASE_CHARGE = {"basic": 30.0, "standard": 65.0, "premium": 95.0}
# Log-odds of churning: a month-to-month contract, electronic cheques, high charges and support calls raise
# them; tenure, long contracts and the support add-on lower them.
INTERCEPT = -1.2
CONTRACT_EFFECT = {"month_to_month": 1.3, "one_year": -0.4, "two_year": -1.6}
PLAN_EFFECT = {"basic": 0.2, "standard": 0.0, "premium": -0.2}
PAYMENT_EFFECT = {"bank_transfer": 0.0, "credit_card": 0.0, "electronic_check": 0.5, "mailed_check": 0.1}
TENURE_EFFECT = -0.04
CHARGE_EFFECT = 0.015
CALL_EFFECT = 0.35
SUPPORT_EFFECT = -0.7


def customers(rng, count, period):
    """`count` customers of `period` (history or serving) as dicts of the CSV's columns, without id and split."""
    plan = rng.choice(PLANS, count, p=PLAN_SHARES)
    contract = rng.choice(CONTRACTS, count, p=CONTRACT_SHARES[period])
    payment = rng.choice(PAYMENT_METHODS, count, p=PAYMENT_SHARES)
    tenure = rng.gamma(1.5, 18.0, count).clip(0, 72).astype(int)
    support = rng.random(count) < SUPPORT_SHARE
    calls = rng.poisson(1.5, count)
    noise = rng.normal(0.0, 8.0, count)
    churn_draw = rng.random(count)
    rows = []
    for i in range(count):
        charges = round(max(10.0, BASE_CHARGE[plan[i]] + 10.0 * support[i] + noise[i]), 2)
        logit = (INTERCEPT + CONTRACT_EFFECT[contract[i]] + PLAN_EFFECT[plan[i]] + PAYMENT_EFFECT[payment[i]]
                 + TENURE_EFFECT * tenure[i] + CHARGE_EFFECT * (charges - 60.0) + CALL_EFFECT * calls[i]
                 + SUPPORT_EFFECT * support[i])
        rows.append({"plan": str(plan[i]), "contract_type": str(contract[i]), "payment_method": str(payment[i]),
                     "tenure_months": int(tenure[i]), "monthly_charges": charges, "support_calls": int(calls[i]),
                     "has_support": "true" if support[i] else "false",
                     LABEL["name"]: int(churn_draw[i] < 1.0 / (1.0 + math.exp(-logit)))})
    return rows


def generate():
    """Every row of the CSV, in order: the history (train and test mixed), then the serving customers."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    history = customers(rng, HISTORY_ROWS, "history")
    test = set(rng.permutation(HISTORY_ROWS)[:round(HISTORY_ROWS * TEST_SHARE)].tolist())
    serving = customers(rng, SERVING_ROWS, "serving")
    rows = []
    for index, row in enumerate(history + serving):
        split = "serving" if index >= HISTORY_ROWS else "test" if index in test else "train"
        rows.append(dict({"customer_id": "%s%04d" % (ENTITY_PREFIX, index + 1), "split": split}, **row))
    return rows


def write(path):
    rows = generate()
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["customer_id", "split"] + list(FEATURES) + [LABEL["name"]],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv=None):
    options = argparse.ArgumentParser(prog="python -m examples.churn.generate",
                                      description=__doc__.split("\n", maxsplit=1)[0])
    options.add_argument("--output", type=Path, default=DATA, help="CSV to write (default: %(default)s)")
    args = options.parse_args(argv)
    rows = write(args.output)
    counts = {split: sum(row["split"] == split for row in rows) for split in ("train", "test", "serving")}
    print("wrote %d customers to %s (%s)" % (len(rows), args.output,
                                             ", ".join("%d %s" % (n, split) for split, n in counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
