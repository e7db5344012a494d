"""The challenger: a second model version, followed through its own alias, that takes part of the traffic.

    split   CHALLENGER_FRACTION of the /predict requests, drawn at random per request, are answered by the
            challenger; the response and the logged rows carry its version and alias.
    shadow  every request is also predicted by the challenger, after the champion: the champion's answer is
            returned, and the challenger's is logged with served=false and the same prediction_id, so ground
            truth joined on prediction_id scores both versions on the same traffic. A request then costs the
            time of both models (the challenger's runs before the answer is sent).

Whatever happens to the challenger (not loaded yet, a version that cannot be loaded, an instance it fails on,
features its signature does not take), the champion answers as if there were none: the failure is counted by
reason in /metrics (mlops_serving_challenger_failures) and shown in /ready and /model.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from .bounds import MAX_MESSAGE, excerpt
from .model import ModelError, feature_errors

LOG = logging.getLogger("mlops_serving.challenger")
WARN_EVERY = 60.0  # seconds between two warnings about failed challenger predictions (all are counted)
# Why the challenger did not predict a request it should have (the `reason` label of the failures counter).
NOT_LOADED = "not_loaded"          # no challenger version is loaded (yet, or its alias points at none)
INVALID_INPUT = "invalid_input"    # its signature or allowed values refuse input the champion took
MODEL_INPUT = "model_input"        # it raised an error on an instance
MODEL_OUTPUT = "model_output"      # its output cannot be used (ModelError), or any other error
LOG_QUEUE_FULL = "log_queue_full"  # shadow rows that did not fit in the prediction log's queue
REASONS = (NOT_LOADED, INVALID_INPUT, MODEL_INPUT, MODEL_OUTPUT, LOG_QUEUE_FULL)


class Challenger:
    """The challenger's model manager and how it takes traffic; counts its failures."""

    def __init__(self, manager, mode, fraction=None, failures=None, draw=None):
        self.manager = manager
        self.mode = mode
        self.fraction = fraction
        self.failures = failures       # prometheus Counter labelled by reason, or None
        self._draw = draw or random.random  # a number in [0, 1) per request: split's coin
        self.last_failure = None       # the latest failed prediction, for /ready and /model
        self._lock = threading.Lock()
        self._warned_at = None
        self._unwarned = 0

    @property
    def alias(self):
        return self.manager.alias

    def answers(self):
        """Split mode: True when this request is drawn for the challenger."""
        return self.mode == "split" and self._draw() < self.fraction

    def predict(self, instances):
        """(model, outputs, latency_ms) of the challenger for these instances, validated by the champion; None
        (the failure counted) when it cannot predict all of them. Never raises: the champion must answer."""
        model = self.manager.current  # this request's challenger, whatever a concurrent swap does
        if model is None:
            self.fail(NOT_LOADED, None)
            return None
        try:
            for index, features in enumerate(instances):
                problem = next(feature_errors(model.columns, features, ["instances", index, "features"],
                                              model.domains), None)
                if problem is not None:
                    self.fail(INVALID_INPUT, "version %s refuses instance %d: %s" % (
                        model.version, index, problem["msg"]))
                    return None
            outputs, latency_ms, failures = model.predict_or_blame(instances, most=1)
        except ModelError as exc:
            self.fail(MODEL_OUTPUT, "version %s: %s" % (model.version, exc))
            return None
        except Exception as exc:  # pylint: disable=broad-exception-caught  # the champion answers regardless
            self.fail(MODEL_OUTPUT, "version %s: %s: %s" % (model.version, type(exc).__name__, exc))
            return None
        if failures:
            index, exc = next(iter(failures.items()))
            self.fail(MODEL_INPUT, "version %s failed on instance %d: %s: %s" % (
                model.version, index, type(exc).__name__, exc))
            return None
        return model, outputs, latency_ms

    def fail(self, reason, message):
        """Count a request the challenger did not predict; warn at most every WARN_EVERY seconds."""
        if self.failures is not None:
            self.failures.labels(reason).inc()
        if message is None:
            return
        message = excerpt(message, MAX_MESSAGE)  # the model's message may quote the input: bounded
        with self._lock:
            self.last_failure = "%s: %s" % (reason, message)
            now = time.monotonic()
            if self._warned_at is not None and now - self._warned_at < WARN_EVERY:
                self._unwarned += 1
                return
            skipped, self._unwarned, self._warned_at = self._unwarned, 0, now
        LOG.warning("challenger %s did not predict a request (%s)%s; the champion answered", self.alias,
                    self.last_failure, " (and %d more since the last warning)" % skipped if skipped else "")

    def describe(self):
        """The challenger in /ready and /model: its alias, mode, fraction and the version loaded, if any."""
        current = self.manager.current
        answer = {"alias": self.alias, "mode": self.mode, "fraction": self.fraction, "loaded": current is not None,
                  "model_version": None if current is None else current.version,
                  "run_id": None if current is None else current.run_id,
                  "loaded_at": None if current is None else current.loaded_at}
        if self.manager.last_error:  # cannot be loaded (or moved to a version that cannot): the champion answers
            answer["error"] = self.manager.last_error
        if self.last_failure:
            answer["last_failure"] = self.last_failure
        return answer
