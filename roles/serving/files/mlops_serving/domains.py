"""Allowed values of categorical features, checked before the model runs.

A value the model never saw in training is not an error the model reliably reports: a OneHotEncoder with
handle_unknown="ignore" encodes it as zeros and the answer looks normal, the default encoder raises. So the
allowed values of a feature are checked first, and an unknown one gets 422 naming the feature, the value and
the allowed values. They come from:

- the inventory: `categories` on a feature of mlops_features (MODEL_FEATURES), when given, or
- the model: the categories_ of the fitted encoders (OneHotEncoder, OrdinalEncoder, TargetEncoder) found by
  walking its Pipeline, ColumnTransformer and FeatureUnion steps down to the input columns.

A feature declared open (`unknown: allow`) takes other values: they are served and counted in /metrics.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from .bounds import EXCERPT, MAX_MESSAGE, excerpt
from .task import plain

LOG = logging.getLogger("mlops_serving.domains")
UNKNOWN = ("refuse", "allow")


@dataclass(frozen=True)
class FeatureSpec:
    """A feature as the inventory declares it (the keys of mlops_features the API uses)."""

    name: str
    categories: tuple | None = None
    unknown: str = "refuse"


def feature_specs(raw):
    """FeatureSpecs of the decoded MODEL_FEATURES (a list of objects); ValueError naming what is wrong."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("expected a JSON list of features, got %s" % type(raw).__name__)
    specs = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ValueError("feature #%d is not an object with a name" % (index + 1))
        categories = item.get("categories")
        if categories is not None:
            if not isinstance(categories, list) or not categories or not all(
                    isinstance(c, (str, int, float, bool)) for c in categories):
                raise ValueError("feature %s: categories must be a non-empty list of values" % item["name"])
            categories = tuple(categories)
        unknown = item.get("unknown", "refuse")
        if unknown not in UNKNOWN:
            raise ValueError("feature %s: unknown must be allow or refuse, got %r" % (item["name"], unknown))
        specs.append(FeatureSpec(name=item["name"], categories=categories, unknown=unknown))
    return tuple(specs)


def _key(value):
    """A value as compared with a domain: 1 and 1.0 are the same number, True is not 1, "1" is not 1."""
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    return (type(value).__name__, value)


def _quoted(value, limit):
    return "'%s'" % excerpt(value, limit) if isinstance(value, str) else excerpt(value, limit)


@dataclass(frozen=True)
class Domain:
    """The allowed values of one feature."""

    feature: str
    values: tuple                     # as shown (in the encoder's or the inventory's order)
    source: str                       # model or inventory
    open: bool = False                # unknown: allow
    keys: frozenset = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "keys", frozenset(_key(v) for v in self.values))

    def allows(self, value):
        try:
            return _key(value) in self.keys
        except TypeError:  # a list or an object: never an allowed value
            return False

    def message(self, value):
        """Why `value` is refused: the feature, the value and as many allowed values as fit in an error."""
        shown = (_quoted(value, EXCERPT), _quoted(self.feature, EXCERPT))
        head = "unknown value %s for feature %s: allowed values are " % shown
        budget = max(60, MAX_MESSAGE - len(head) - 45)  # what is left once the "and N more" tail is counted
        shown, used = [], 0
        for allowed in self.values:
            text = _quoted(allowed, 32)
            if shown and used + len(text) + 2 > budget:
                break
            shown.append(text)
            used += len(text) + 2
        tail = " and %d more (GET /model lists them)" % (len(self.values) - len(shown)) \
            if len(shown) < len(self.values) else ""
        return head + ", ".join(shown) + tail

    def describe(self):
        return {"categories": list(self.values), "categories_from": self.source,
                "unknown": "allow" if self.open else "refuse"}


# -- the model's encoders --------------------------------------------------------------------------------
def _values(categories):
    """One encoder's categories as plain values, without the missing-value category (null is checked apart)."""
    values = []
    for value in categories:
        value = plain(value)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        values.append(value)
    return values


def _select(columns, names):
    """The input column names a ColumnTransformer gives one transformer; None when they cannot be told."""
    columns = plain(columns)
    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, int):
        return [names[columns]] if names is not None and -len(names) <= columns < len(names) else None
    if isinstance(columns, slice):
        integral = all(isinstance(i, int) or i is None for i in (columns.start, columns.stop, columns.step))
        return list(names[columns]) if names is not None and integral else None
    try:
        items = [plain(c) for c in columns]
    except TypeError:
        return None
    if all(isinstance(c, str) for c in items):
        return items
    if names is None:
        return None
    if all(isinstance(c, bool) for c in items) and len(items) == len(names):
        return [name for name, chosen in zip(names, items) if chosen]
    if all(isinstance(c, int) and not isinstance(c, bool) and -len(names) <= c < len(names) for c in items):
        return [names[c] for c in items]
    return None


def _names_out(step, names):
    """The column names a Pipeline step hands to the next; None when it does not say."""
    if step is None or step == "passthrough":
        return names
    try:
        return [str(n) for n in step.get_feature_names_out(names)]
    except Exception:  # pylint: disable=broad-exception-caught  # a step that cannot name its outputs
        return None


def _walk(node, names, found):
    if node is None or isinstance(node, str):  # "drop", "passthrough"
        return
    own = getattr(node, "feature_names_in_", None)
    if own is not None:
        names = [str(n) for n in own]
    steps = getattr(node, "steps", None)
    if isinstance(steps, list):  # Pipeline: each step sees what the one before hands on
        for _name, step in steps:
            _walk(step, names, found)
            names = _names_out(step, names)
        return
    fitted = getattr(node, "transformers_", None)
    if isinstance(fitted, list):  # ColumnTransformer: each transformer sees its own columns
        for _name, transformer, columns in fitted:
            _walk(transformer, _select(columns, names), found)
        return
    union = getattr(node, "transformer_list", None)
    if isinstance(union, list):  # FeatureUnion: every transformer sees all the columns
        for _name, transformer in union:
            _walk(transformer, names, found)
        return
    categories = getattr(node, "categories_", None)
    if isinstance(categories, list) and names is not None and len(names) == len(categories):
        for name, values in zip(names, categories):
            values = _values(values)
            if name in found:  # two encoders of one column: a value must pass both
                keys = {_key(v) for v in values}
                found[name] = ([v for v in found[name][0] if _key(v) in keys], found[name][1])
            else:
                found[name] = (values, getattr(node, "handle_unknown", None))


def encoder_categories(model):
    """{input column: (categories, handle_unknown)} of the fitted encoders in a scikit-learn model."""
    found = {}
    if model is not None:
        _walk(model, None, found)
    return found


def domains(model, columns, features, what):
    """{feature: Domain} for the loaded model's columns: the inventory's categories, else the model's."""
    names = {c.name for c in columns}
    declared = {spec.name: spec for spec in features}
    for name in sorted(set(declared) - names):
        LOG.warning("%s: the inventory's feature %s (MODEL_FEATURES) is not an input of the model; ignored",
                    what, name)
    try:
        learned = encoder_categories(model)
    except Exception as exc:  # pylint: disable=broad-exception-caught  # the domains are a check, not the model
        LOG.warning("%s: could not read the categories of the model's encoders (%s: %s): only the inventory's "
                    "categories are checked", what, type(exc).__name__, exc)
        learned = {}
    result = {}
    for column in columns:
        spec = declared.get(column.name, FeatureSpec(column.name))
        open_ = spec.unknown == "allow"
        if spec.categories is not None:
            result[column.name] = Domain(column.name, spec.categories, "inventory", open_)
        elif column.name in learned and learned[column.name][0]:
            values, handle_unknown = learned[column.name]
            result[column.name] = Domain(column.name, tuple(values), "model", open_)
            if open_ and handle_unknown == "error":
                LOG.warning("%s: feature %s is open (unknown: allow) but the model's encoder refuses unknown values "
                            "(handle_unknown='error'): instances with one get 422", what, column.name)
    return result
