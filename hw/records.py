"""Amaranth layouts of the DRAM records, built from the declarations in ``model/layout.py``."""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from defslice.model.layout import DESC_HEADER, DESC_LEVEL, POINT_RECORD, RecordFormat

__all__ = [
    "COORD_BITS",
    "COUNT_BITS",
    "DESC_FIELD_BITS",
    "WEIGHT_BITS",
    "descriptor_layout",
    "header_layout",
    "point_record_layout",
    "record_layout",
    "window_layout",
]


def record_layout(fmt: RecordFormat) -> data.StructLayout:
    """The fields of ``fmt`` as a :class:`~amaranth.lib.data.StructLayout` (``signed`` /
    ``unsigned`` of the declared widths) whose offsets equal the declared ones.

    Raises
    ------
    ValueError
        When the declared fields leave a gap (a struct layout packs its fields back to
        back) or do not fill the record.
    """
    fields = sorted(fmt.fields, key=lambda f: f.offset)
    layout = data.StructLayout({
        f.name: (signed if f.signed else unsigned)(f.width) for f in fields})
    for f in fields:
        if layout[f.name].offset != f.offset:
            raise ValueError(f"{fmt.name}.{f.name}: declared at bit {f.offset}, packed at "
                             f"{layout[f.name].offset} (fields must be contiguous)")
    if layout.size != fmt.bits:
        raise ValueError(f"{fmt.name}: fields cover {layout.size} of {fmt.bits} bits")
    return layout


def point_record_layout() -> data.StructLayout:
    """One point record: ``x``, ``y`` (Q(coord_frac) pixels), ``weight``."""
    return record_layout(POINT_RECORD)


def header_layout() -> data.StructLayout:
    """The descriptor header: ``query_start``, ``query_count``, ``slice_index``."""
    return record_layout(DESC_HEADER)


def window_layout() -> data.StructLayout:
    """One slice window on one level, the eight descriptor fields (``i16`` each)."""
    return record_layout(DESC_LEVEL)


def descriptor_layout(levels: int) -> data.StructLayout:
    """A whole descriptor: ``header`` then ``levels`` windows (``level[l]``)."""
    return data.StructLayout({"header": header_layout(),
                              "level": data.ArrayLayout(window_layout(), levels)})


#: Widths of the record fields the datapath computes with.
COORD_BITS = POINT_RECORD.field("x").width
WEIGHT_BITS = POINT_RECORD.field("weight").width
DESC_FIELD_BITS = DESC_LEVEL.field("row0").width
#: Query counts and beat counts: as wide as the descriptor's ``query_count``.
COUNT_BITS = DESC_HEADER.field("query_count").width
