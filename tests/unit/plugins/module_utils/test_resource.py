"""The comparison helpers of module_utils/resource.py: what counts as a change and what the diff shows."""

from __future__ import annotations

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils.resource import (
    Exact,
    differences,
    patch_body,
    project,
    prune,
    top_level,
)


# --- differences: subset comparison -----------------------------------------------------------------

def test_equal_bodies_have_no_difference():
    body = {"description": "x", "labels": {"app": "mlops"}, "access": [{"role": "READER"}]}
    assert not differences(body, dict(body))


def test_keys_the_user_did_not_set_are_ignored():
    desired = {"description": "features"}
    actual = {"description": "features", "etag": "abc", "creationTime": "1700000000000", "location": "US"}
    assert not differences(desired, actual)


def test_changed_scalar_is_reported_by_its_path():
    assert differences({"description": "new"}, {"description": "old"}) == ["description"]


def test_missing_key_in_actual_is_a_difference():
    assert differences({"description": "x"}, {}) == ["description"]


def test_nested_dict_reports_dotted_path_and_ignores_extra_nested_keys():
    desired = {"datasetReference": {"projectId": "p", "datasetId": "d"}}
    assert not differences(desired, {"datasetReference": {"projectId": "p", "datasetId": "d", "extra": 1}})
    assert differences(desired, {"datasetReference": {"projectId": "p", "datasetId": "other"}}) == [
        "datasetReference.datasetId"]
    deep = {"a": {"b": {"c": 1}}}
    assert differences(deep, {"a": {"b": {"c": 2}}}) == ["a.b.c"]
    assert differences(deep, {"a": {"b": None}}) == ["a.b"]


def test_several_differences_are_sorted_and_unique():
    desired = {"z": 1, "a": {"x": 1, "y": 2}}
    assert differences(desired, {"z": 2, "a": {"x": 0, "y": 0}}) == ["a.x", "a.y", "z"]


def test_desired_dict_against_non_dict():
    assert differences({"a": {"b": 1}}, {"a": "text"}) == ["a"]
    assert differences({"a": {"b": 1}}, {}) == ["a"]
    # An empty desired mapping asks for nothing when the field is absent, but a non-mapping is a change.
    assert not differences({"a": {}}, {})
    assert differences({"a": {}}, {"a": "text"}) == ["a"]
    assert differences({"a": Exact()}, {"a": ["x"]}) == ["a"]


# --- differences: scalars ---------------------------------------------------------------------------

@pytest.mark.parametrize("desired, actual", [
    (3600000, "3600000"),        # int64 as JSON string
    ("3600000", 3600000),
    ("3600000", "3600000"),
    (1.5, "1.5"),
    (2, 2.0),
])
def test_int64_encoded_as_string_equals_the_number(desired, actual):
    assert not differences({"ms": desired}, {"ms": actual})


@pytest.mark.parametrize("desired, actual", [
    (3600000, "7200000"),
    ("3600000", 7200000),
    (5, "five"),
    ("five", 5),
])
def test_different_numbers_differ(desired, actual):
    assert differences({"ms": desired}, {"ms": actual}) == ["ms"]


def test_int64_beyond_float_precision_compares_exactly():
    assert differences({"generation": 2 ** 53 + 1}, {"generation": str(2 ** 53)}) == ["generation"]
    assert not differences({"generation": 2 ** 62 + 1}, {"generation": str(2 ** 62 + 1)})


@pytest.mark.parametrize("desired, actual", [
    ("01", "1"),       # a label value changed from "1" to "01" is a change
    ("1.0", "1"),
    ("1e3", "1000"),
])
def test_two_strings_compare_as_text(desired, actual):
    assert differences({"labels": Exact(v=desired)}, {"labels": {"v": actual}}) == ["labels.v"]


@pytest.mark.parametrize("desired, actual", [
    (True, "true"),
    ("true", True),
    (False, "false"),
    (True, 1),
    (False, 0),
    (0, False),
    (True, False),
])
def test_bool_never_equals_string_or_number(desired, actual):
    assert differences({"flag": desired}, {"flag": actual}) == ["flag"]


def test_bool_equals_same_bool():
    assert not differences({"flag": True}, {"flag": True})
    assert not differences({"flag": False}, {"flag": False})


def test_none_actual_differs_from_value():
    assert differences({"a": 0}, {"a": None}) == ["a"]
    assert differences({"a": ""}, {}) == ["a"]


# --- differences: Exact mappings --------------------------------------------------------------------

def test_exact_extra_key_in_actual_is_a_change():
    desired = {"labels": Exact(app="mlops")}
    assert differences(desired, {"labels": {"app": "mlops", "team": "ml"}}) == ["labels"]


def test_exact_same_keys_no_change():
    assert not differences({"labels": Exact(app="mlops")}, {"labels": {"app": "mlops"}})


def test_exact_changed_value_is_reported_by_key():
    assert differences({"labels": Exact(app="new")}, {"labels": {"app": "old"}}) == ["labels.app"]


def test_exact_missing_key_and_extra_key():
    found = differences({"labels": Exact(a="1")}, {"labels": {"b": "1"}})
    assert found == ["labels", "labels.a"]
    assert top_level(found) == ["labels"]


def test_empty_exact_against_absent_field_is_no_change():
    # APIs omit empty maps: labels: {} on a resource without labels must stay idempotent.
    assert not differences({"labels": Exact()}, {})
    assert not differences({"labels": Exact()}, {"labels": {}})
    assert differences({"labels": Exact()}, {"labels": {"app": "mlops"}}) == ["labels"]


def test_exact_against_absent_field_with_content_is_a_change():
    assert differences({"labels": Exact(app="mlops")}, {}) == ["labels"]


def test_plain_dict_extra_keys_are_not_a_change_but_exact_ones_are():
    actual = {"m": {"a": 1, "b": 2}}
    assert not differences({"m": {"a": 1}}, actual)
    assert differences({"m": Exact(a=1)}, actual) == ["m"]


# --- differences: lists -----------------------------------------------------------------------------

def test_list_same_items_same_order():
    assert not differences({"l": [1, 2, 3]}, {"l": [1, 2, 3]})


def test_list_order_matters():
    assert differences({"l": [1, 2]}, {"l": [2, 1]}) == ["l"]


def test_list_length_matters():
    assert differences({"l": [1, 2]}, {"l": [1, 2, 3]}) == ["l"]
    assert differences({"l": [1, 2, 3]}, {"l": [1, 2]}) == ["l"]


def test_list_items_compare_as_subsets_and_report_the_list_path():
    desired = {"access": [{"role": "READER", "userByEmail": "a@x"}]}
    assert not differences(desired, {"access": [{"role": "READER", "userByEmail": "a@x", "extra": True}]})
    assert differences(desired, {"access": [{"role": "WRITER", "userByEmail": "a@x"}]}) == ["access"]


def test_list_items_use_int64_equality():
    assert not differences({"l": [1, "2"]}, {"l": ["1", 2]})


def test_empty_list_against_missing_or_empty():
    assert not differences({"l": []}, {})
    assert not differences({"l": []}, {"l": []})
    assert differences({"l": []}, {"l": [1]}) == ["l"]
    assert differences({"l": [1]}, {}) == ["l"]
    assert differences({"l": [1]}, {"l": "1"}) == ["l"]


# --- prune ------------------------------------------------------------------------------------------

def test_prune_drops_none_recursively_and_keeps_falsy_values():
    body = {"a": None, "b": 0, "c": False, "d": "", "e": {"x": None, "y": {"z": None, "k": 1}}, "f": [{"g": None, "h": 2}]}
    assert prune(body) == {"b": 0, "c": False, "d": "", "e": {"y": {"k": 1}}, "f": [{"h": 2}]}


def test_prune_keeps_exact_type():
    pruned = prune({"labels": Exact(a="1", b=None), "nested": {"inner": Exact(c=None)}})
    assert isinstance(pruned["labels"], Exact) and pruned["labels"] == {"a": "1"}
    assert isinstance(pruned["nested"]["inner"], Exact) and pruned["nested"]["inner"] == {}
    assert not isinstance(pruned["nested"], Exact)


def test_prune_does_not_modify_its_input():
    body = {"a": None, "b": {"c": None}}
    prune(body)
    assert body == {"a": None, "b": {"c": None}}


# --- project and top_level --------------------------------------------------------------------------

def test_project_keeps_only_what_desired_talks_about():
    actual = {"description": "d", "etag": "e", "ref": {"p": "x", "q": "y"}, "labels": {"a": "1", "b": "2"}}
    desired = {"description": "new", "ref": {"p": "z"}, "labels": Exact(a="1"), "missing": 1}
    assert project(actual, desired) == {"description": "d", "ref": {"p": "x"}, "labels": {"a": "1", "b": "2"}}


def test_project_of_exact_returns_a_copy():
    actual = {"a": "1", "b": "2"}
    projected = project(actual, Exact(a="1"))
    assert projected == actual and projected is not actual


def test_project_non_dict_values_are_returned_as_is():
    assert project([1, 2], [3]) == [1, 2]
    assert project({"a": [{"x": 1, "y": 2}]}, {"a": [{"x": 1}]}) == {"a": [{"x": 1, "y": 2}]}
    assert project("text", {"a": 1}) == "text"


def test_top_level():
    assert top_level(["labels.app", "labels", "access", "datasetReference.datasetId", "access"]) == [
        "access", "datasetReference", "labels"]
    assert not top_level([])


# --- patch_body -------------------------------------------------------------------------------------

def test_patch_body_sends_only_changed_fields():
    desired = {"description": "new", "location": "EU", "labels": Exact(a="1")}
    assert patch_body({"description": "old"}, desired, ["description"]) == {"description": "new"}


def test_patch_body_removes_dropped_exact_keys_with_null():
    actual = {"labels": {"a": "0", "b": "1"}}
    body = patch_body(actual, {"labels": Exact(a="1", c="2")}, ["labels"])
    assert body == {"labels": {"a": "1", "b": None, "c": "2"}}
    assert actual == {"labels": {"a": "0", "b": "1"}}, "actual is not modified"


def test_patch_body_exact_without_actual_mapping():
    assert patch_body({}, {"labels": Exact(a="1")}, ["labels"]) == {"labels": {"a": "1"}}
    assert patch_body({"labels": None}, {"labels": Exact()}, ["labels"]) == {"labels": {}}


def test_patch_body_plain_dict_is_sent_as_is():
    body = patch_body({"versioning": {"enabled": True, "x": 1}}, {"versioning": {"enabled": False}}, ["versioning"])
    assert body == {"versioning": {"enabled": False}}
