"""Files written around the page cache (engine/directio.py) hold exactly the
bytes given, whether O_DIRECT is used, refused, not asked for or switched off."""
import errno
import os

import numpy as np
import pytest
from astropy.io import fits

from drizzleflow.engine import directio
from drizzleflow.engine.directio import DirectWriter


@pytest.fixture(params=["direct", "buffered", "switched_off"])
def mode(request, monkeypatch):
    if request.param == "switched_off":
        monkeypatch.setenv("DRIZZLEFLOW_DIRECT_IO", "0")
    return request.param


def _pieces(rng, total):
    """Odd-sized pieces (1 byte to a few blocks) adding up to ``total`` bytes."""
    data = rng.integers(0, 256, size=total, dtype=np.uint8)
    cuts = np.sort(rng.choice(np.arange(1, total), size=total // 3000, replace=False))
    return data, np.split(data, cuts)


def test_writer_keeps_every_byte_across_chunks(tmp_path, mode):
    rng = np.random.default_rng(1)
    data, parts = _pieces(rng, 5 * 8192 + 123)   # 5 full chunks of 8 kB and a partial block
    path = tmp_path / "a.bin"
    w = DirectWriter(path, chunk=8192, direct=(mode != "buffered"))
    if mode != "direct":
        assert not w.direct
    for p in parts:
        w.write(p)
    w.close()
    assert w.size == data.size
    assert path.read_bytes() == data.tobytes()


def test_a_device_refusing_the_alignment_falls_back_to_buffered_io(tmp_path, monkeypatch):
    """EINVAL from a direct write (a device wanting larger blocks) clears O_DIRECT on the
    descriptor and the same bytes are written; nothing is lost or doubled."""
    real_write = os.write
    refused = []

    def write(fd, view):
        if not refused:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, view)

    rng = np.random.default_rng(3)
    data, parts = _pieces(rng, 3 * 8192 + 5)   # the refusal comes with the first full chunk
    w = DirectWriter(tmp_path / "c.bin", chunk=8192)
    if not w.direct:
        w.abort()
        pytest.skip("this file system has no O_DIRECT")
    monkeypatch.setattr(directio.os, "write", write)
    for p in parts:
        w.write(p)
    w.close()
    assert refused and not w.direct
    assert (tmp_path / "c.bin").read_bytes() == data.tobytes()


def test_a_refusal_of_the_padded_last_block_leaves_no_padding(tmp_path, monkeypatch):
    """The last partial block goes out zero-padded; refused and written buffered, the
    padding is still cut off."""
    real_write = os.write
    refused = []

    def write(fd, view):
        if not refused:
            refused.append(len(view))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, view)

    w = DirectWriter(tmp_path / "f.bin", chunk=8192)
    if not w.direct:
        w.abort()
        pytest.skip("this file system has no O_DIRECT")
    data = np.arange(5000, dtype=np.uint16).view(np.uint8)[:9999]   # one chunk and a bit
    w.write(data[:8192])   # written directly
    monkeypatch.setattr(directio.os, "write", write)
    w.write(data[8192:])   # stays in the buffer until close
    w.close()
    assert refused == [4096] and not w.direct
    assert (tmp_path / "f.bin").read_bytes() == data.tobytes()


def test_a_write_error_reaches_the_caller(tmp_path, monkeypatch):
    def full(fd, view):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(directio.os, "write", full)
    w = DirectWriter(tmp_path / "d.bin", chunk=8192)
    with pytest.raises(OSError, match="No space"):
        w.write(np.zeros(3 * 8192, np.uint8))
    w.abort()
    monkeypatch.undo()
    data = (np.arange(20000) % 251).astype(np.uint8)
    w = DirectWriter(tmp_path / "e.bin", chunk=8192)   # the buffer given back serves again
    w.write(data)
    w.close()
    assert (tmp_path / "e.bin").read_bytes() == data.tobytes()


@pytest.mark.parametrize("direct", [True, False])
def test_band_file_equals_astropys_stream_byte_for_byte(tmp_path, direct):
    """A band-written image is the file astropy's StreamingHDU writes from the same
    header and rows, padding included."""
    from drizzleflow.steps.chain.banding import BandWriter, _primary_header

    rng = np.random.default_rng(4)
    img = rng.normal(size=(37, 301)).astype(np.float32)   # rows that end mid-block
    hdr = fits.Header([("BUNIT", "ELECTRONS/S"), ("EXPTIME", 10.0)])
    ours = tmp_path / "ours.fits"
    w = BandWriter({"sci": ours}, {"sci": hdr}, img.shape, {}, direct=direct)
    for y0 in range(0, 37, 10):
        w.write(sci=img[y0:y0 + 10].copy())
    w.close()
    ref = tmp_path / "ref.fits"
    s = fits.StreamingHDU(str(ref), _primary_header(-32, img.shape, hdr))
    for y0 in range(0, 37, 10):
        s.write(img[y0:y0 + 10])
    s.close()
    assert ours.read_bytes() == ref.read_bytes()
    assert np.array_equal(fits.getdata(ours), img)


def test_band_writer_refuses_missing_or_extra_rows_and_leaves_nothing(tmp_path):
    from drizzleflow.steps.chain.banding import BandWriter

    path = tmp_path / "x.fits"
    w = BandWriter({"sci": path}, {"sci": fits.Header()}, (4, 5), {}, direct=True)
    w.write(sci=np.zeros((3, 5), np.float32))
    with pytest.raises(OSError, match="never written"):
        w.close()
    w.abort()
    w = BandWriter({"sci": path}, {"sci": fits.Header()}, (4, 5), {})
    with pytest.raises(OSError, match="more rows"):
        w.write(sci=np.zeros((5, 5), np.float32))
    w.abort()
    assert list(tmp_path.iterdir()) == []
