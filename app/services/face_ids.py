"""Vendor-shaped face ids, derived from the face row: stable, unique, never a second copy.

Each vendor's clients expect their own shape (`../shared/dialects.md`):
- Tencent: decimal digits in a JSON string, 19 of them like its samples ("1005338790489817087");
- Alibaba: a JSON integer of 18 digits like its sample (2****************6), beyond 2^53;
- Huawei: a short random-looking string ("cFydu4d2"): 8 base-62 characters.

Every shape is a bijection of the face's integer primary key, so one face has exactly one id per
vendor and the id leads back to the row without a lookup table. The Huawei shape multiplies by
an odd constant modulo 2^47 first, so consecutive faces do not get consecutive-looking ids.
Ownership is still checked by whoever resolves the row: an id is a name, not a permission.
"""

from __future__ import annotations

import string

from app.domain import Dialect

TENCENT_BASE = 10**18  # 19 digits up to 9 * 10^18 faces
ALIBABA_BASE = 2 * 10**17  # 18 digits starting with 2, as the seed's sample
HUAWEI_BITS = 47  # 62^8 > 2^47: every row id below 2^47 fits 8 characters
HUAWEI_MULTIPLIER = 0x5DEECE66D  # odd, so invertible modulo 2^47
HUAWEI_INVERSE = pow(HUAWEI_MULTIPLIER, -1, 1 << HUAWEI_BITS)
HUAWEI_SET_MULTIPLIER = 0x27BB2EE687B0B0FD % (1 << HUAWEI_BITS) | 1  # odd: a bijection too
HUAWEI_CHARS = 8
ALPHABET = string.digits + string.ascii_letters


def _huawei_shape(row_id: int, multiplier: int) -> str:
    value = (row_id * multiplier) % (1 << HUAWEI_BITS)
    chars = []
    for _ in range(HUAWEI_CHARS):
        value, digit = divmod(value, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def huawei_face_set_id(row_id: int) -> str:
    """A face set's 8-character id: the face shape with another multiplier, so that face set
    and face ids of the same row number differ."""
    return _huawei_shape(row_id, HUAWEI_SET_MULTIPLIER)


def vendor_face_id(dialect: Dialect, row_id: int) -> str | int:
    if dialect is Dialect.TENCENT:
        return str(TENCENT_BASE + row_id)
    if dialect is Dialect.ALIBABA:
        return ALIBABA_BASE + row_id
    if dialect is Dialect.HUAWEI:
        return _huawei_shape(row_id, HUAWEI_MULTIPLIER)
    raise ValueError(f"{dialect} face ids are the public id")


def face_row_id(dialect: Dialect, face_id: object) -> int | None:
    """The face row a vendor id names; None for anything that is not that vendor's shape."""
    if dialect is Dialect.TENCENT and isinstance(face_id, str) and face_id.isdecimal():
        row_id = int(face_id) - TENCENT_BASE
        return row_id if 0 < row_id < 9 * 10**18 and len(face_id) == 19 else None
    if dialect is Dialect.ALIBABA:
        if isinstance(face_id, str) and face_id.isdecimal():  # a client that quotes the Long
            face_id = int(face_id)
        if isinstance(face_id, int) and not isinstance(face_id, bool):
            row_id = face_id - ALIBABA_BASE
            return row_id if 0 < row_id < 8 * 10**17 else None
        return None
    if dialect is Dialect.HUAWEI and isinstance(face_id, str) and len(face_id) == HUAWEI_CHARS:
        value = 0
        for char in face_id:
            digit = ALPHABET.find(char)
            if digit < 0:
                return None
            value = value * len(ALPHABET) + digit
        if value >= 1 << HUAWEI_BITS:
            return None
        row_id = (value * HUAWEI_INVERSE) % (1 << HUAWEI_BITS)
        return row_id or None
    return None
