"""What the model predicts: the task the inventory declares, checked against the model when it is loaded.

The inventory declares the label once (mlops_label: type, task, positive_class, classes); the role passes it as
MODEL_TASK, MODEL_LABEL_TYPE, MODEL_POSITIVE_CLASS and MODEL_CLASSES. The estimator alone cannot be trusted to
say what it is: a label read from BigQuery as pandas Int64 gives a LogisticRegression float classes (0.0, 1.0),
and MLflow then infers a float output, so the model looks like a regressor. With the declaration:

- classification: the model must have classes_ and predict_proba. Its answer is the class in the label's type
  (1, not 1.0, for an INTEGER label), `probability` of the positive class for a binary classifier and a
  `probabilities` map for more classes.
- regression: the model must not be a classifier (no classes_); its answer is a number.
- auto (nothing declared): a model with classes_ and predict_proba answers as a classifier (classes that are
  all integral floats as integers), any other with its raw output, as it comes.

A model that contradicts the declaration is refused when loaded (Mismatch): the version served keeps serving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TASKS = ("auto", "regression", "classification")
# BigQuery's names (the REST API's and the standard SQL aliases) -> the one this module uses.
LABEL_TYPES = {"INTEGER": "INTEGER", "INT64": "INTEGER", "FLOAT": "FLOAT", "FLOAT64": "FLOAT", "NUMERIC": "FLOAT",
               "BIGNUMERIC": "FLOAT", "STRING": "STRING", "BOOLEAN": "BOOLEAN", "BOOL": "BOOLEAN"}
SHOWN_CLASSES = 20  # classes named in a refusal message


class Mismatch(Exception):
    """The loaded model contradicts the declared label (its task, type, classes or positive class)."""


@dataclass(frozen=True)
class Declared:
    """The label and features as the inventory declares them (see config.py for the variables)."""

    task: str = "auto"
    label_type: str | None = None     # one of LABEL_TYPES' values, or None: classes as the model has them
    positive_class: object = None     # in the label's type
    classes: tuple | None = None      # in the label's type
    features: tuple = ()              # domains.FeatureSpec


def plain(value):
    """A numpy scalar as the Python value it holds; anything else as it is."""
    item = getattr(value, "item", None)
    if item is not None and type(value).__module__ == "numpy":
        return item()
    return value


def cast_label(value, label_type):
    """`value` (a class as the model or the inventory has it) in the label's type; ValueError if it is not one."""
    value = plain(value)
    if label_type is None:
        return value
    if label_type == "STRING":
        if isinstance(value, bool):
            return label_text(value)
        if isinstance(value, float) and value.is_integer():
            return str(int(value))  # the class 1.0 of an Int64 label is "1", as BigQuery casts the INTEGER 1
        if isinstance(value, (str, int, float)):
            return str(value)
    elif label_type == "BOOLEAN":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
    elif label_type == "INTEGER":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    else:  # FLOAT, NUMERIC
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    raise ValueError("%r is not a%s %s label" % (value, "n" if label_type[0] in "AEIOU" else "", label_type))


def label_text(value):
    """A class as the predictions table's prediction_label holds it (and as BigQuery casts a label to STRING)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class OutputSpec:
    """How the loaded model's output is answered and logged."""

    task: str = "raw"                 # classification, regression, or raw (auto and not a classifier)
    classes: tuple = ()               # classification: the classes in predict_proba's column order, label typed
    positive_index: int | None = None  # binary classification: predict_proba's column of the positive class
    label_type: str | None = None
    proba: object = None              # classification: the model's predict_proba

    @property
    def binary(self):
        return self.task == "classification" and len(self.classes) == 2

    @property
    def positive_class(self):
        return None if self.positive_index is None else self.classes[self.positive_index]


def _shown(values):
    text = ", ".join(repr(v) for v in list(values)[:SHOWN_CLASSES])
    return "[%s%s]" % (text, " and %d more" % (len(values) - SHOWN_CLASSES) if len(values) > SHOWN_CLASSES else "")


def resolve(model, declared, what):
    """The OutputSpec of `model` (the flavour's raw model, None for a custom pyfunc) under `declared`;
    Mismatch, whose message starts with `what` (such as "version 3 of churn"), when they contradict."""
    classes = getattr(model, "classes_", None) if model is not None else None
    proba = getattr(model, "predict_proba", None) if model is not None else None
    kind = type(model).__name__ if model is not None else "a custom python model"
    if declared.task == "regression":
        if classes is not None:
            raise Mismatch("%s: the label is declared a regression target (mlops_label.task: regression, "
                           "MODEL_TASK), but the model, %s, is a classifier with classes %s. Serve a regressor, or "
                           "declare task: classification" % (what, kind, _shown([plain(c) for c in classes])))
        return OutputSpec(task="regression", label_type=declared.label_type)
    if classes is None or not callable(proba):
        if declared.task == "classification":
            missing = " and ".join(name for name, found in (("classes_", classes is not None),
                                                            ("predict_proba", callable(proba))) if not found)
            raise Mismatch("%s: the label is declared a classification target (mlops_label.task: classification, "
                           "MODEL_TASK), but the model, %s, has no %s: it is not a classifier that gives "
                           "probabilities. Serve one (for an SVC: probability=True), or declare task: regression"
                           % (what, kind, missing))
        return OutputSpec(task="raw", label_type=declared.label_type)
    return _classifier(list(classes), proba, declared, what)


def _classifier(classes, proba, declared, what):
    label_type = declared.label_type
    if label_type is None and all(isinstance(plain(c), float) and plain(c).is_integer() for c in classes):
        # Undeclared, classes 0.0 and 1.0 are an integer label that went through a float (pandas Int64):
        # answered 1 and logged "1", as BigQuery casts the label.
        label_type = "INTEGER"
    try:
        typed = tuple(cast_label(c, label_type) for c in classes)
    except ValueError as exc:
        raise Mismatch("%s: the model's classes %s do not fit the label's type %s (mlops_label.type): %s" % (
            what, _shown([plain(c) for c in classes]), label_type, exc)) from None
    if len(typed) < 2 or len(set(map(label_text, typed))) != len(typed):
        raise Mismatch("%s: a classifier needs two or more distinct classes, the model has %s" % (what, _shown(typed)))
    if declared.classes is not None and {label_text(c) for c in declared.classes} != set(map(label_text, typed)):
        raise Mismatch("%s: the model's classes are %s, the declared ones (mlops_label.classes, MODEL_CLASSES) %s"
                       % (what, _shown(typed), _shown(declared.classes)))
    positive = None
    if len(typed) == 2:
        positive = 1  # scikit-learn's convention: classes_ is sorted and the second is the positive one
        if declared.positive_class is not None:
            texts = [label_text(c) for c in typed]
            wanted = label_text(declared.positive_class)
            if wanted not in texts:
                raise Mismatch("%s: the declared positive class %r (mlops_label.positive_class, MODEL_POSITIVE_CLASS)"
                               " is not one of the model's classes %s" % (what, declared.positive_class, _shown(typed)))
            positive = texts.index(wanted)
    elif declared.positive_class is not None:
        raise Mismatch("%s: a positive class (mlops_label.positive_class) is declared, but the model has %d classes "
                       "(%s); a positive class is for binary classifiers" % (what, len(typed), _shown(typed)))
    return OutputSpec(task="classification", classes=typed, positive_index=positive, label_type=label_type,
                      proba=proba)
