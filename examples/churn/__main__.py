"""python -m examples.churn: the churn example (examples/churn/example.py)."""

import sys

from examples.churn.example import main

sys.exit(main())
