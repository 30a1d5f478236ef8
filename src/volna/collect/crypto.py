"""Sealing answers to the researchers' public key, and opening them with the private key.

The construction is HPKE-like and small enough to write twice, here and in
``static/seal.js`` (WebCrypto), byte for byte the same:

1. a fresh ephemeral P-256 key pair per submission; ECDH with the
   researchers' public key gives a shared secret (the x coordinate);
2. HKDF-SHA256 (no salt) turns it into an AES-256 key, with ``info`` binding
   the format version, the recipient's key id and the ephemeral point;
3. AES-256-GCM encrypts the padded plaintext, with the envelope header as
   associated data, so no byte of the envelope can change unnoticed.

The plaintext is padded inside the encryption: a 4-byte big-endian length,
the plaintext, then zeros up to the smallest bucket that holds it. An
envelope's length therefore tells only its bucket, never how long a free-text
answer was.

Envelope layout (all sizes in bytes)::

    version (1) | key id (8) | ephemeral point (65) | nonce (12) | ciphertext + tag

The key id is the first 8 bytes of SHA-256 of the recipient's uncompressed
point: the server uses it to refuse anything not sealed to its key, and
export to say which key a submission needs. The private key never reaches
the server; it is stored as passphrase-encrypted PKCS#8 PEM.

>>> private_pem, public_text = generate_keypair("correct horse battery staple")
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "pub.key").write_bytes(public_text)
>>> _ = (folder / "priv.pem").write_bytes(private_pem)
>>> public = load_public_key(folder / "pub.key")
>>> envelope = seal(public, "Да".encode())
>>> len(envelope) in ENVELOPE_SIZES, looks_sealed(envelope, public)
(True, True)
>>> private = load_private_key(folder / "priv.pem", "correct horse battery staple")
>>> open_sealed(private, envelope).decode()
'Да'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from volna.errors import VolnaError

PublicKey = ec.EllipticCurvePublicKey
PrivateKey = ec.EllipticCurvePrivateKey

#: The envelope format version, the first byte of every envelope.
VERSION = 1
#: Padded plaintext sizes: 1, 4, 16 and 64 KiB (the 4-byte length prefix included).
BUCKETS: tuple[int, ...] = (1024, 4096, 16384, 65536)
_LENGTH = 4  # the big-endian length prefix inside the padding
#: The longest plaintext that can be sealed.
MAX_PLAINTEXT = BUCKETS[-1] - _LENGTH
_KEY_ID = 8
_POINT = 65  # uncompressed P-256 point: 0x04 | x (32) | y (32)
_NONCE = 12
_TAG = 16
#: Bytes before the ciphertext: version, key id, ephemeral point, nonce.
HEADER_SIZE = 1 + _KEY_ID + _POINT + _NONCE
#: The only lengths an envelope can have, one per bucket.
ENVELOPE_SIZES: tuple[int, ...] = tuple(HEADER_SIZE + b + _TAG for b in BUCKETS)
_INFO = b"volna seal v1"
_PUBLIC_HEADER = "# volna public key (P-256)"


class KeyFileError(VolnaError):
    """A key file is missing, malformed, of the wrong kind, or the passphrase is wrong."""


class SealError(VolnaError):
    """An envelope cannot be sealed or opened: too long, damaged, or for another key."""


def _point(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def key_id(public_key: PublicKey) -> bytes:
    """The 8-byte id of a public key (SHA-256 of its point), carried in every envelope.

    >>> private = ec.derive_private_key(7, ec.SECP256R1())
    >>> key_id(private.public_key()).hex()
    'b33e4d1c20df2789'
    """
    return hashlib.sha256(_point(public_key)).digest()[:_KEY_ID]


def browser_key(public_key: PublicKey) -> str:
    """The public key as seal.js takes it: base64url (no padding) of the uncompressed point.

    >>> private = ec.derive_private_key(7, ec.SECP256R1())
    >>> key = browser_key(private.public_key())
    >>> len(key), key[:2]
    (87, 'BI')
    """
    return _b64url(_point(public_key))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_key_text(public_key: PublicKey) -> bytes:
    """The public key file's contents: a comment line with the key id, then the point.

    >>> private = ec.derive_private_key(7, ec.SECP256R1())
    >>> print(public_key_text(private.public_key()).decode().splitlines()[0])
    # volna public key (P-256), key id b33e4d1c20df2789
    """
    return (
        f"{_PUBLIC_HEADER}, key id {key_id(public_key).hex()}\n{browser_key(public_key)}\n"
    ).encode("ascii")


def generate_keypair(passphrase: str) -> tuple[bytes, bytes]:
    """A new key pair: (private key file bytes, public key file bytes).

    The private key is PKCS#8 PEM encrypted with ``passphrase`` (an empty one
    is refused); the public key file is the text :func:`load_public_key` reads.

    >>> private_pem, public_text = generate_keypair("a long passphrase")
    >>> private_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    True
    >>> generate_keypair("")
    Traceback (most recent call last):
    ...
    volna.collect.crypto.KeyFileError: the passphrase is empty; the private key must be protected
    """
    if not passphrase:
        raise KeyFileError("the passphrase is empty; the private key must be protected")
    private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode("utf-8")),
    )
    return private_pem, public_key_text(private.public_key())


def _read(path: str | Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise KeyFileError(f"{path}: is a folder, not a {what} file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the {what} file: {exc.strerror}") from None
    if len(data) > 64 * 1024:
        raise KeyFileError(f"{path}: {len(data)} bytes is too large for a {what} file")
    return data


def _p256(key: object, path: str | Path, what: str):
    if not isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) or not (
        isinstance(key.curve, ec.SECP256R1)
    ):
        raise KeyFileError(f"{path}: the {what} is not a P-256 key (make one with volna keygen)")
    return key


def load_public_key(path: str | Path) -> PublicKey:
    """Read a public key file: volna's (written by ``volna keygen``) or PEM SubjectPublicKeyInfo.

    A malformed file, or a private key given by mistake, is a one-line error
    naming the file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "pub.key"
    >>> _ = p.write_text("# volna public key (P-256)\\nnot-a-key\\n")
    >>> load_public_key(p)
    Traceback (most recent call last):
    ...
    volna.collect.crypto.KeyFileError: ...pub.key: not a public key: expected the base64url point...
    """
    data = _read(path, "public key")
    if b"PRIVATE KEY" in data:
        raise KeyFileError(
            f"{path}: this is a PRIVATE key; the server needs only the public key "
            "(volna-public.key), and the private key must never reach it"
        )
    if b"-----BEGIN PUBLIC KEY-----" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise KeyFileError(f"{path}: not a valid PEM public key") from None
        return _p256(key, path, "public key")
    lines = [
        line.strip()
        for line in data.decode("utf-8", errors="replace").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    try:
        if len(lines) != 1:
            raise ValueError
        text = lines[0]
        point = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        if len(point) != _POINT:  # a compressed point would work but is not what we write
            raise ValueError
    except (ValueError, binascii.Error):
        raise KeyFileError(
            f"{path}: not a public key: expected the base64url point written by volna "
            "keygen, or a PEM public key"
        ) from None
    return key


def load_private_key(path: str | Path, passphrase: str) -> PrivateKey:
    """Read the passphrase-protected private key file; a wrong passphrase is a one-line error.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "priv.pem"
    >>> _ = p.write_bytes(generate_keypair("right one")[0])
    >>> load_private_key(p, "wrong one")
    Traceback (most recent call last):
    ...
    volna.collect.crypto.KeyFileError: ...priv.pem: wrong passphrase for this private key
    """
    data = _read(path, "private key")
    if b"PRIVATE KEY-----" not in data:
        raise KeyFileError(f"{path}: not a PEM private key (make one with volna keygen)")
    try:
        key = serialization.load_pem_private_key(data, passphrase.encode("utf-8"))
    except TypeError:
        # written without a passphrase (not by volna keygen): usable, but unprotected
        try:
            key = serialization.load_pem_private_key(data, None)
        except (ValueError, TypeError):
            raise KeyFileError(f"{path}: not a readable private key") from None
    except ValueError as exc:
        if "password" in str(exc).lower() or "decrypt" in str(exc).lower():
            raise KeyFileError(f"{path}: wrong passphrase for this private key") from None
        raise KeyFileError(f"{path}: not a readable private key") from None
    return _p256(key, path, "private key")


def _derive(shared: bytes, header: bytes) -> bytes:
    # info binds version, key id and the ephemeral point (the first 74 header bytes)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + header[:-_NONCE])
    return hkdf.derive(shared)


def pad(plaintext: bytes) -> bytes:
    """The plaintext with its length prefix, zero-filled to the smallest bucket that fits.

    >>> len(pad(b"yes")), pad(b"yes")[:7]
    (1024, b'\\x00\\x00\\x00\\x03yes')
    >>> len(pad(bytes(1021)))
    4096
    """
    size = len(plaintext) + _LENGTH
    for bucket in BUCKETS:
        if size <= bucket:
            return len(plaintext).to_bytes(_LENGTH, "big") + plaintext + bytes(bucket - size)
    raise SealError(
        f"the answers are {len(plaintext)} bytes, more than the {MAX_PLAINTEXT} that can be sealed"
    )


def seal(public_key: PublicKey, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` to ``public_key``, padded to its bucket (see the module's layout).

    >>> key = ec.derive_private_key(7, ec.SECP256R1()).public_key()
    >>> [len(seal(key, b"x" * n)) for n in (0, 1020, 1021, MAX_PLAINTEXT)]
    [1126, 1126, 4198, 65638]
    """
    padded = pad(plaintext)
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    header = (
        bytes([VERSION]) + key_id(public_key) + _point(ephemeral.public_key()) + os.urandom(_NONCE)
    )
    key = _derive(ephemeral.exchange(ec.ECDH(), public_key), header)
    return header + AESGCM(key).encrypt(header[-_NONCE:], padded, header)


def open_sealed(private_key: PrivateKey, envelope: bytes) -> bytes:
    """Decrypt an envelope made by :func:`seal` or seal.js; SealError if it cannot be.

    Anything that is not an intact envelope sealed to this key (truncated,
    altered, sealed to another key, garbage) raises :class:`SealError`.

    >>> private = ec.derive_private_key(7, ec.SECP256R1())
    >>> open_sealed(private, seal(private.public_key(), b"answers"))
    b'answers'
    >>> open_sealed(private, b"garbage")
    Traceback (most recent call last):
    ...
    volna.collect.crypto.SealError: not a sealed envelope: 7 bytes (expected one of 1126, ...)
    """
    if not isinstance(envelope, bytes | bytearray | memoryview):
        raise SealError(f"not a sealed envelope: a {type(envelope).__name__}, not bytes")
    envelope = bytes(envelope)
    if len(envelope) not in ENVELOPE_SIZES:
        raise SealError(
            f"not a sealed envelope: {len(envelope)} bytes "
            f"(expected one of {', '.join(map(str, ENVELOPE_SIZES))})"
        )
    if envelope[0] != VERSION:
        raise SealError(f"not a sealed envelope: format version {envelope[0]}, expected {VERSION}")
    mine = key_id(private_key.public_key())
    theirs = envelope[1 : 1 + _KEY_ID]
    if theirs != mine:
        raise SealError(
            f"sealed to another key (key id {theirs.hex()}; this private key is {mine.hex()})"
        )
    header, body = envelope[:HEADER_SIZE], envelope[HEADER_SIZE:]
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), header[1 + _KEY_ID : 1 + _KEY_ID + _POINT]
        )
        key = _derive(private_key.exchange(ec.ECDH(), ephemeral), header)
        padded = AESGCM(key).decrypt(header[-_NONCE:], body, header)
    except (ValueError, InvalidTag):
        raise SealError("the envelope was altered or damaged: it does not decrypt") from None
    size = int.from_bytes(padded[:_LENGTH], "big")
    if size > len(padded) - _LENGTH or any(padded[_LENGTH + size :]):
        raise SealError("the envelope decrypts but its padding is malformed")
    return padded[_LENGTH : _LENGTH + size]


def looks_sealed(envelope: object, public_key: PublicKey) -> bool:
    """True when ``envelope`` has the shape of one sealed to ``public_key``; never raises.

    A structural check (version, key id, length, an uncompressed point), what
    a server without the private key can verify to refuse plaintext.

    >>> key = ec.derive_private_key(7, ec.SECP256R1()).public_key()
    >>> looks_sealed(seal(key, b"x"), key), looks_sealed(b"x" * 1126, key), looks_sealed(None, key)
    (True, False, False)
    """
    try:
        if not isinstance(envelope, bytes | bytearray | memoryview):
            return False
        envelope = bytes(envelope)
        return (
            len(envelope) in ENVELOPE_SIZES
            and envelope[0] == VERSION
            and envelope[1 : 1 + _KEY_ID] == key_id(public_key)
            and envelope[1 + _KEY_ID] == 4
        )
    except Exception:  # hostile input must never become a server error
        return False
