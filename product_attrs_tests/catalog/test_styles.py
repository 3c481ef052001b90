from __future__ import annotations

import pandas as pd
import pytest

from product_attrs.catalog.styles import StylesFormatError, parse_styles_text

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
    ],
)
def test_bad_lines_are_quarantined_with_line_number_and_reason(line: str, reason: str):
    p = parse("1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Good", line)
    assert len(p.rows) == 1
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
    assert "line 2" in p.quarantine.iloc[0]["detail"]


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
