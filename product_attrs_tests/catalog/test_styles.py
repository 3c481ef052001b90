from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from product_attrs.catalog.styles import (
    FIELD_LIMIT,
    INT64_MAX,
    STYLES_COLUMNS,
    StylesFormatError,
    ascii_id,
    line_fields,
    parse_styles,
    parse_styles_text,
    split_lines,
)

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"


def parse(*lines: str):
    return parse_styles_text("\n".join([HEADER, *lines]) + "\n")


def test_good_rows_parse_with_types():
    p = parse("1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Nike Men Blue Tshirt")
    row = p.rows.iloc[0]
    assert row["id"] == 1 and row["year"] == 2012 and row["article_type"] == "Tshirts"
    assert row["product_display_name"] == "Nike Men Blue Tshirt"
    assert not row["repaired"] and row["line"] == 2
    assert p.quarantine.empty


def test_extra_comma_in_last_column_is_repaired_and_flagged():
    p = parse(
        "44065,Men,Personal Care,Fragrance,Perfume and Body Mist,Blue,Spring,2017,Casual,"
        "Perfume and Body Mist, Blue"
    )
    row = p.rows.iloc[0]
    assert row["product_display_name"] == "Perfume and Body Mist, Blue"
    assert row["repaired"] and p.n_repaired == 1
    assert p.quarantine.empty


def test_two_extra_commas_are_repaired_too():
    p = parse("7,Men,Apparel,Topwear,Shirts,Red,Fall,2011,Casual,A, B, C")
    assert p.rows.iloc[0]["product_display_name"] == "A, B, C"


def test_extra_comma_in_a_middle_column_cannot_be_repaired():
    # The comma sits inside articleType: the year column then holds 'Casual', so no repair is safe.
    p = parse("8,Men,Apparel,Topwear,Shirts, Formal,Red,Fall,2011,Casual,Name")
    assert p.rows.empty
    q = p.quarantine.iloc[0]
    assert q["reason"] == "unrepairable_extra_fields" and q["record_id"] == "line:2"
    assert "8,Men,Apparel" in q["detail"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("9,Men,Apparel,Topwear", "too_few_fields"),
        ("abc,Men,Apparel,Topwear,Shirts,Red,Fall,2011,Casual,Name", "bad_id"),
        ("10,Men,Apparel,Topwear,Shirts,Red,Fall,twenty,Casual,Name", "bad_year"),
        ('11,Men,Apparel,Topwear,Shirts,Red,Fall,2011,Casual,"unterminated', "unparseable_line"),
        ("12,Men,Apparel,Topwear,Shirts,Red,Fall,2011,Casual,A\x00B", "nul_byte"),
        ("1,Men,Apparel,Topwear,Shirts,Red,Fall,2011,Casual,Again", "duplicate_id"),
        ("13,Men,Apparel,Topwear,Shirts, Formal,Red,Fall,2011,Casual,Name", "unrepairable_extra_fields"),
    ],
)
def test_bad_lines_are_quarantined_with_line_number_and_reason(line: str, reason: str):
    # A good line after the bad one: the reader goes on past every kind of bad line.
    p = parse(
        "1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Good",
        line,
        "2,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,After",
    )
    assert p.rows["id"].tolist() == [1, 2]
    assert p.quarantine["reason"].tolist() == [reason]
    assert p.quarantine["record_id"].tolist() == ["line:3"]
    assert len(p.rows) + len(p.quarantine) == p.n_lines


def test_missing_values_become_null_but_keep_the_row():
    p = parse("12,Women,Apparel,Topwear,Tops,NA,,,NA,Top")
    row = p.rows.iloc[0]
    assert pd.isna(row["base_colour"]) and pd.isna(row["season"]) and pd.isna(row["usage"])
    assert pd.isna(row["year"])


def test_duplicate_id_keeps_first_and_quarantines_the_rest():
    p = parse(
        "5,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,First",
        "5,Men,Apparel,Topwear,Tshirts,Red,Summer,2012,Casual,Second",
    )
    assert p.rows["product_display_name"].tolist() == ["First"]
    assert p.quarantine.iloc[0]["reason"] == "duplicate_id"
    assert p.quarantine.iloc[0]["record_id"] == "line:3"
    assert p.quarantine.iloc[0]["detail"].startswith("id 5 already on line 2 | raw: 5,Men")


def test_blank_lines_are_counted_not_quarantined():
    p = parse(
        "1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,A",
        "",
        "2,Men,Apparel,Topwear,Tshirts,Blue,Summer,2013,Casual,B",
    )
    assert len(p.rows) == 2 and p.n_blank == 1 and p.quarantine.empty


def test_wrong_header_is_a_clear_error():
    with pytest.raises(StylesFormatError, match="not the Kaggle styles header"):
        parse_styles_text("a,b,c\n1,2,3\n")


def test_bom_is_ignored():
    p = parse_styles_text("\ufeff" + HEADER + "\n1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,A\n")
    assert len(p.rows) == 1


def test_nul_byte_line_is_quarantined():
    p = parse("1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,A\x00B")
    assert p.rows.empty and p.quarantine.iloc[0]["reason"] == "nul_byte"


GOOD = "1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Good"


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("a\r\nb\rc\n", ["a", "b", "c"]),
        ("a\nb", ["a", "b"]),  # no final line end: the last line is kept
        ("a\n\n", ["a", ""]),  # only the final line end is dropped, not a blank line before it
        ("x\x1cy\x85z\u2028w\n", ["x\x1cy\x85z\u2028w"]),  # what str.splitlines would cut
        ("", []),
    ],
)
def test_split_lines_ends_lines_where_the_csv_module_does(text: str, lines: list[str]):
    assert split_lines(text) == lines


def test_line_fields_plain_and_quoted():
    assert line_fields("a,b,,c") == ["a", "b", "", "c"]
    assert line_fields('a,"b, c",d') == ["a", "b, c", "d"]  # a quoted comma stays in its field


@pytest.mark.parametrize(
    ("raw", "verdict"),
    [
        ("a\x00b", ("nul_byte", "line contains a NUL byte")),
        ('"a"b,c', ("unparseable_line", "csv error: ',' expected after '\"'")),  # strict quoting
        ("x" * (FIELD_LIMIT + 1), ("field_too_large", "a field is longer than 131,072 characters")),
        (
            '"' + "x" * (FIELD_LIMIT + 1) + '"',
            ("field_too_large", "a field is longer than 131,072 characters"),
        ),
    ],
)
def test_line_fields_says_why_a_line_has_no_fields(raw: str, verdict: tuple[str, str]):
    assert line_fields(raw) == verdict


def test_field_limit_is_inclusive_and_per_field():
    assert line_fields("x" * FIELD_LIMIT + ",y") == ["x" * FIELD_LIMIT, "y"]
    many = ",".join(["x" * 1000] * 200)  # a long line of short fields is fine
    assert len(line_fields(many)) == 200


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("1", 1),
        ("0042", 42),
        ("0" * 30 + "5", 5),  # leading zeros do not count towards the length
        (str(INT64_MAX), INT64_MAX),
        (str(INT64_MAX + 1), "id_out_of_range"),
        ("1" * 20, "id_out_of_range"),
        ("9" * 5000, "id_out_of_range"),  # never reaches int() and its 4,300-digit limit
        ("0", "id_out_of_range"),
        ("\u00b2", "bad_id"),
        ("-1", "bad_id"),
        ("", "bad_id"),
    ],
)
def test_ascii_id(text: str, verdict: int | str):
    assert ascii_id(text) == verdict


def test_ascii_id_minimum():
    assert ascii_id("0", minimum=0) == 0 and ascii_id("4", minimum=5) == "id_out_of_range"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "styles.csv is empty"),
        ("id,\x00\n", r"styles.csv: the header line is not csv \(line contains a NUL byte\)"),
        ("a,b,c\n", r"styles.csv: header \['a', 'b', 'c'\] is not the Kaggle styles header \['id', 'gender'"),
    ],
)
def test_unusable_files_say_why(text: str, message: str):
    with pytest.raises(StylesFormatError, match=message):
        parse_styles_text(text)


def test_only_a_bom_is_stripped_from_the_header():
    with pytest.raises(StylesFormatError, match="not the Kaggle styles header"):
        parse_styles_text("X" + HEADER + "\n" + GOOD + "\n")


def test_header_names_are_trimmed():
    p = parse_styles_text(" id , gender" + HEADER[len("id,gender") :] + "\n" + GOOD + "\n")
    assert p.rows["id"].tolist() == [1]


def test_quarantine_records_say_where_what_and_why():
    p = parse(GOOD, "9,Men,Apparel,Topwear", "x" * 600)
    assert p.quarantine.to_dict("records") == [
        {
            "source": "styles.csv",
            "record_id": "line:3",
            "reason": "too_few_fields",
            "detail": "expected 10 fields, saw 4 | raw: 9,Men,Apparel,Topwear",
        },
        {
            "source": "styles.csv",
            "record_id": "line:4",
            "reason": "too_few_fields",
            "detail": "expected 10 fields, saw 1 | raw: " + "x" * 500,  # the raw text is cut at 500
        },
    ]
    assert p.n_lines == 3


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        (" abc,Men,A,T,S,R,F,2011,C,N", "id 'abc' is not an integer in 1..9223372036854775807"),
        (
            "b" * 50 + ",Men,A,T,S,R,F,2011,C,N",
            f"id {'b' * 40!r} is not an integer in 1..9223372036854775807",
        ),
        ("10,Men,A,T,S,R,F,twenty,C,N", "year 'twenty' is not a 4-digit year"),
    ],
)
def test_bad_id_and_year_details(line: str, detail: str):
    assert parse(line).quarantine["detail"].tolist() == [f"{detail} | raw: {line}"]


def test_nul_bytes_are_shown_escaped_in_the_quarantine():
    assert parse("1,A\x00B").quarantine["detail"].tolist() == ["line contains a NUL byte | raw: 1,A\\0B"]


def test_ids_and_years_are_trimmed_and_read_leniently():
    p = parse(
        " 5 ,Men,Apparel,Topwear,Tshirts,Blue,Summer, 2012.0 ,Casual,A",
        "6,Men,Apparel,Topwear,Tshirts,Blue,Summer,NULL,Casual,B",
        "7,Men,Apparel,Topwear,Tshirts,Blue,Summer,None,Casual,C",
    )
    assert p.quarantine.empty
    assert p.rows["id"].tolist() == [5, 6, 7] and p.rows["gender"].tolist() == ["Men"] * 3
    assert p.rows["year"].tolist() == [2012, pd.NA, pd.NA]


def test_counts_of_repaired_and_blank_lines():
    p = parse(
        "1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,A, B",
        "   ",
        "2,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,C, D",
        "",
        "3,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,E",
    )
    assert p.n_repaired == 2 and p.n_blank == 2 and p.n_lines == 5
    assert p.rows["repaired"].tolist() == [True, True, False]
    assert p.rows["line"].tolist() == [2, 4, 6]


def test_text_values_are_trimmed_strings_and_markers_are_null():
    p = parse("1, Men ,Apparel,Topwear,Tshirts,null,N/A,2012, Casual ,  Name  ")
    row = p.rows.iloc[0]
    assert row["gender"] == "Men" and row["usage"] == "Casual" and row["product_display_name"] == "Name"
    assert pd.isna(row["base_colour"]) and pd.isna(row["season"])
    assert {str(p.rows[c].dtype) for c in ("gender", "usage", "product_display_name")} == {"string"}


def test_a_file_of_bad_lines_gives_typed_empty_tables():
    p = parse("abc,1")
    assert p.rows.empty and list(p.rows.columns) == [*STYLES_COLUMNS.values(), "line", "repaired"]
    dtypes = {c: str(t) for c, t in p.rows.dtypes.items()}
    assert (dtypes["id"], dtypes["year"], dtypes["line"], dtypes["repaired"]) == (
        "int64",
        "Int64",
        "int64",
        "bool",
    )
    assert dtypes["article_type"] == "string"
    empty = parse(GOOD).quarantine
    assert empty.empty and list(empty.columns) == ["source", "record_id", "reason", "detail"]


def test_parse_styles_reads_a_file_and_replaces_undecodable_bytes(tmp_path: Path):
    path = tmp_path / "my_styles.csv"
    path.write_bytes(
        HEADER.encode() + b"\n1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Go\xffd\nabc\n"
    )
    p = parse_styles(path)
    assert p.rows["product_display_name"].tolist() == ["Go\ufffdd"]
    assert p.quarantine["source"].tolist() == ["my_styles.csv"]
    with pytest.raises(FileNotFoundError, match="no styles file at"):
        parse_styles(tmp_path / "absent.csv")
