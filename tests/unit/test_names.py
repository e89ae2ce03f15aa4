"""Dataset names with underscores (even ending like a method) split correctly; unusable characters are refused."""

import pytest

from retrieval.names import check_dataset_name, split_result_name

METHODS = ("global", "lw", "aqe", "adba", "superglobal", "sv", "ames", "ames_binary", "ssp")


@pytest.mark.parametrize(
    "name, want",
    [
        ("demo_global", ("demo", "global")),
        ("x_y_global", ("x_y", "global")),
        ("x_ames_ames_binary", ("x_ames", "ames_binary")),
        ("x_ames_ames", ("x_ames", "ames")),
        ("x_ames_binary", ("x", "ames_binary")),
        ("my.photos-2024_v2+1m_sv", ("my.photos-2024_v2+1m", "sv")),
        ("demo_nosuch", ("demo", "nosuch")),  # the caller names the unknown method
    ],
)
def test_result_names_split_at_the_longest_known_method(name, want):
    assert split_result_name(name, METHODS) == want


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("my photos_global", r"\[' '\] are not allowed"),
        ("_x_global", "first character"),
        ("a'b_sv", "not allowed.*ASCII letters \\(a-z, A-Z\\), digits"),
        ("café_global", r"\['é'\] are not allowed; a dataset name holds ASCII letters"),
        ("global", r"^results/global\.json: a result is named results/\{dataset\}_\{method\}\.json"),
    ],
)
def test_unusable_names_are_refused_naming_the_allowed_characters(name, pattern):
    with pytest.raises(ValueError, match=pattern):
        split_result_name(name, METHODS)


def test_check_dataset_name_accepts_folder_like_names():
    for ok in ("roxford5k", "x_y", "Photos.2024", "a+1m", "b-c_d"):
        assert check_dataset_name(ok) == ok
