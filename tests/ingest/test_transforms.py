"""Unit tests of the ingestion transforms (facegan/ingest/: options, listing, archives, image_ops, labels).

No Beam run, no TFX: every bad file, format and mode is synthesized here in memory/tmp_path.
Expected values are derived independently (hand-computed pixels, numpy 2x2 means, PIL on the
same inputs only where PIL *is* the named reference, e.g. the filter registry).
"""
import io
import json
import os
import struct
import tarfile
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from facegan.ingest import options as O
from facegan.ingest import listing as L
from facegan.ingest import archives as A
from facegan.ingest import image_ops as IM
from facegan.ingest import labels as LB
from facegan import schema


def enc(img, fmt, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, format=fmt, **kw)
    return b.getvalue()


def rgb_image(rng, h=48, w=48):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def cfg(**kw):
    kw.setdefault("resolution", 32)
    kw.setdefault("min_side", 8)
    return O.IngestConfig(**kw)


def reason_of(data, **kw):
    with pytest.raises(O.Rejected) as e:
        IM.process_bytes(data, cfg(**kw))
    return e.value.reason


# ------------------------------------------------------------------ rejection reasons

def test_zero_byte():
    assert reason_of(b"") == O.ZERO_BYTE


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF", "PPM", "WEBP"])
def test_truncated_each_format(rng, fmt):
    data = enc(Image.fromarray(rgb_image(rng, 64, 64)), fmt)
    assert reason_of(data[: len(data) // 2]) == O.TRUNCATED


def test_not_an_image():
    assert reason_of(b"name,age\nalice,3\n") == O.NOT_AN_IMAGE
    assert reason_of(b"GIF89a" + bytes(20)) == O.NOT_AN_IMAGE


def test_unreadable_corrupt_png_stream(rng):
    data = bytearray(enc(Image.fromarray(rgb_image(rng, 64, 64)), "PNG"))
    i = data.find(b"IDAT")
    broken = bytes(data[: i + 14]) + bytes(200) + bytes(data[i + 214:])   # same length, zeros
    assert len(broken) == len(data)
    assert reason_of(broken) == O.UNREADABLE


def test_unreadable_recognised_header_that_fails():
    assert reason_of(b"BM" + bytes(100)) == O.UNREADABLE


def test_too_small_is_configurable(rng):
    data = enc(Image.fromarray(rgb_image(rng, 20, 30)), "PNG")
    assert reason_of(data, min_side=21) == O.TOO_SMALL
    assert IM.process_bytes(data, cfg(min_side=20)).image.shape == (32, 32, 3)


def test_oversized_configurable_max_pixels(rng):
    data = enc(Image.fromarray(rgb_image(rng, 50, 40)), "PNG")
    assert reason_of(data, max_pixels=50 * 40 - 1) == O.OVERSIZED
    IM.process_bytes(data, cfg(max_pixels=50 * 40))


def _png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def test_oversized_decompression_bomb_header_not_decoded():
    # A 100000 x 100000 PNG header with a tiny IDAT: rejected from the header, never decoded.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
           + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _png_chunk(b"IEND", b""))
    assert reason_of(png) == O.OVERSIZED


# ------------------------------------------------------------------ formats and modes

@pytest.mark.parametrize("fmt,kw", [("PNG", {}), ("BMP", {}), ("PPM", {}),
                                    ("WEBP", {"lossless": True}), ("TIFF", {})])
def test_lossless_formats_round_trip_exactly(rng, fmt, kw):
    arr = rgb_image(rng, 32, 32)
    p = IM.process_bytes(enc(Image.fromarray(arr), fmt, **kw), cfg(resolution=32))
    np.testing.assert_array_equal(p.image, arr)   # 32x32 -> 32: no crop, no resample
    assert (p.orig_height, p.orig_width) == (32, 32)


def test_jpeg_decodes_close(rng):
    arr = np.zeros((32, 32, 3), np.uint8)
    arr[:, :16] = (200, 30, 40)
    p = IM.process_bytes(enc(Image.fromarray(arr), "JPEG", quality=95), cfg())
    assert np.abs(p.image[4:28, 2:12].astype(int) - (200, 30, 40)).max() < 12


def test_pgm_greyscale():
    g = (np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)
    p = IM.process_bytes(enc(Image.fromarray(g, "L"), "PPM"), cfg())   # PIL writes P5 (PGM) for L
    assert enc(Image.fromarray(g, "L"), "PPM")[:2] == b"P5"
    np.testing.assert_array_equal(p.image, np.stack([g] * 3, -1))


def test_gif_takes_first_frame():
    red = Image.new("RGB", (32, 32), (255, 0, 0))
    blue = Image.new("RGB", (32, 32), (0, 0, 255))
    data = enc(red, "GIF", save_all=True, append_images=[blue])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    p = IM.process_bytes(data, cfg())
    assert tuple(p.image[16, 16]) == (255, 0, 0)


BG = (10, 20, 30)


def test_modes_l_la_rgba_composite_on_background():
    conv = lambda im: np.asarray(IM.to_rgb(im, BG))  # noqa: E731
    assert tuple(conv(Image.new("L", (2, 2), 77))[0, 0]) == (77, 77, 77)
    assert tuple(conv(Image.new("LA", (2, 2), (77, 0)))[0, 0]) == BG           # transparent
    assert tuple(conv(Image.new("LA", (2, 2), (77, 255)))[0, 0]) == (77, 77, 77)
    assert tuple(conv(Image.new("RGBA", (2, 2), (200, 100, 50, 0)))[0, 0]) == BG
    assert tuple(conv(Image.new("RGBA", (2, 2), (200, 100, 50, 255)))[0, 0]) == (200, 100, 50)
    half = conv(Image.new("RGBA", (2, 2), (200, 100, 50, 128)))[0, 0].astype(int)
    expect = np.array([200, 100, 50]) * 128 / 255 + np.array(BG) * 127 / 255
    assert np.abs(half - expect).max() <= 1


def test_mode_p_with_and_without_transparency():
    p = Image.new("P", (2, 2), 1)
    p.putpalette([0, 0, 0, 255, 128, 0] + [0] * 762)
    assert tuple(np.asarray(IM.to_rgb(p, BG))[0, 0]) == (255, 128, 0)
    p.info["transparency"] = 1
    assert tuple(np.asarray(IM.to_rgb(p, BG))[0, 0]) == BG
    # and through a real PNG file with a tRNS chunk
    data = enc(p, "PNG", transparency=1)
    img = IM.process_bytes(data, cfg(resolution=8, min_side=1, background=BG)).image
    assert tuple(img[0, 0]) == BG


def test_mode_cmyk_jpeg_and_raw():
    assert tuple(np.asarray(IM.to_rgb(Image.new("CMYK", (2, 2), (0, 0, 0, 0))))[0, 0]) == (255, 255, 255)
    assert tuple(np.asarray(IM.to_rgb(Image.new("CMYK", (2, 2), (0, 0, 0, 255))))[0, 0]) == (0, 0, 0)
    data = enc(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)   # red
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    px = IM.process_bytes(data, cfg()).image[16, 16].astype(int)
    assert px[0] > 230 and px[1] < 25 and px[2] < 25


def test_mode_16bit_greyscale_scaled_not_clipped():
    a = np.array([[0, 257 * 100], [65535, 257 * 200]], np.uint16)
    im = Image.fromarray(a)
    assert im.mode == "I;16"
    out = np.asarray(IM.to_rgb(im))[..., 0]
    np.testing.assert_array_equal(out, [[0, 100], [255, 200]])
    # a 16-bit PNG file, end to end
    big = np.full((16, 16), 257 * 40, np.uint16)
    data = enc(Image.fromarray(big), "PNG")
    assert IM.process_bytes(data, cfg(resolution=16, min_side=1)).image.max() == 40


def test_exif_orientation_applied():
    arr = np.zeros((40, 60, 3), np.uint8)            # 60 wide, 40 high
    arr[:, :30] = (255, 0, 0)                         # left half red
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6                                  # display = rotate 90 degrees clockwise
    data = enc(im, "JPEG", quality=95, exif=exif.tobytes())
    rgb, (h, w) = IM.decode(data)
    assert (h, w) == (60, 40)                         # now portrait
    a = np.asarray(rgb).astype(int)
    assert a[10, 20, 0] > 200 and a[50, 20, 0] < 50   # the left half became the top half


# ------------------------------------------------------------------ crop and resize

def test_crop_boxes():
    assert IM.crop_box(100, 60, "center") == (20, 0, 80, 60)
    assert IM.crop_box(60, 100, "center") == (0, 20, 60, 80)
    # celeba: rows 10..99 of 109 in the half-size set, rows 20..198 of 218 in the original
    assert IM.crop_box(89, 109, "celeba") == (0, 10, 89, 99)
    assert IM.crop_box(178, 218, "celeba") == (0, 20, 178, 198)
    l, t, r, b = IM.crop_box(178, 250, "celeba")      # taller frame: anchored to the face box
    assert (r - l, b - t) == (178, 178) and t == round(250 * 109 / 218 - 89)
    assert IM.crop_box(100, 60, "none") == (0, -20, 100, 80)
    with pytest.raises(O.IngestError, match="crop"):
        IM.crop_box(10, 10, "face")


def test_center_crop_pixels_exact_when_no_resample(rng):
    arr = rgb_image(rng, 40, 32)          # 32 wide, 40 high -> rows 4..36
    p = IM.process_bytes(enc(Image.fromarray(arr), "PNG"), cfg(resolution=32))
    np.testing.assert_array_equal(p.image, arr[4:36])


def test_celeba_crop_on_89x109(rng):
    arr = rgb_image(rng, 109, 89)
    img = IM.square_crop_resize(Image.fromarray(arr), 32, "celeba", "box")
    ref = np.asarray(Image.fromarray(arr[10:99]).resize((32, 32), Image.BOX))
    np.testing.assert_array_equal(img, ref)


def test_none_pads_with_background():
    red = Image.new("RGB", (64, 32), (255, 0, 0))
    img = IM.square_crop_resize(red, 16, "none", "box", background=(0, 0, 255))
    assert img.shape == (16, 16, 3)
    assert tuple(img[0, 8]) == (0, 0, 255) and tuple(img[15, 8]) == (0, 0, 255)   # pad rows
    assert tuple(img[8, 0]) == (255, 0, 0) and tuple(img[8, 15]) == (255, 0, 0)   # image


def test_box_filter_is_a_2x2_mean(rng):
    arr = rgb_image(rng, 64, 64)
    img = IM.square_crop_resize(Image.fromarray(arr), 32, "center", "box")
    mean = arr.astype(np.float64).reshape(32, 2, 32, 2, 3).mean((1, 3))
    assert np.abs(img.astype(np.float64) - mean).max() <= 1.0


def test_lanczos_antialiases_a_nyquist_pattern():
    # 1-pixel stripes are above the target's Nyquist limit: an antialiasing filter averages them
    # to grey, a point sampler (nearest) keeps one phase of the stripes.
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255
    lz = IM.square_crop_resize(Image.fromarray(stripes), 16, "center", "lanczos").astype(int)
    nn = IM.square_crop_resize(Image.fromarray(stripes), 16, "center", "nearest").astype(int)
    assert np.abs(lz[4:12, 4:12] - 127.5).max() < 20
    assert nn.std() == 0 and nn.mean() in (0, 255)


def test_box_downsample_chain_matches_numpy_pyramid(rng):
    img = rgb_image(rng, 16, 16)
    chain = IM.box_downsample_chain(img, (4, 8))
    f = img.astype(np.float64)
    m8 = f.reshape(8, 2, 8, 2, 3).mean((1, 3))
    m4 = m8.reshape(4, 2, 4, 2, 3).mean((1, 3))
    np.testing.assert_array_equal(chain[8], np.rint(m8).astype(np.uint8))
    np.testing.assert_array_equal(chain[4], np.rint(m4).astype(np.uint8))
    assert set(chain) == {4, 8}


def test_process_bytes_extra_resolutions_and_mirror(rng):
    data = enc(Image.fromarray(rgb_image(rng, 64, 64)), "PNG")
    p = IM.process_bytes(data, cfg(resolution=32, extra_resolutions="4,16,8"))
    assert sorted(p.extra) == [4, 8, 16] and p.extra[4].shape == (4, 4, 3)
    m = IM.mirror(p)
    np.testing.assert_array_equal(m.image, p.image[:, ::-1])
    for r in p.extra:
        np.testing.assert_array_equal(m.extra[r], p.extra[r][:, ::-1])
    # flipping commutes with the box pyramid: pyramid of the mirror == mirror of the pyramid
    for r, a in IM.box_downsample_chain(m.image, (4, 8, 16)).items():
        np.testing.assert_array_equal(a, m.extra[r])


# ------------------------------------------------------------------ config validation

@pytest.mark.parametrize("bad", [0, 4, 48, 2048, "64x", 64.5])
def test_bad_resolution_names_field(bad):
    with pytest.raises(O.IngestError, match="resolution"):
        O.IngestConfig(resolution=bad)


@pytest.mark.parametrize("kw,field", [({"crop": "face"}, "crop"), ({"filter": "cubic"}, "filter"),
                                      ({"extra_resolutions": "3"}, "extra_resolutions"),
                                      ({"extra_resolutions": "128"}, "extra_resolutions"),
                                      ({"eval_fraction": 1.0}, "eval_fraction"),
                                      ({"max_rejected_fraction": 1.5}, "max_rejected_fraction"),
                                      ({"min_side": 0}, "min_side"),
                                      ({"background": "1,2"}, "background")])
def test_bad_config_names_field(kw, field):
    with pytest.raises(O.IngestError, match=field):
        O.IngestConfig(resolution=64, **kw)


def test_extra_resolutions_parse():
    assert O.IngestConfig(resolution=64, extra_resolutions="32, 4,8,64").extra_resolutions == (4, 8, 32)
    assert O.IngestConfig(resolution=64, extra_resolutions=[16]).extra_resolutions == (16,)


# ------------------------------------------------------------------ splits

def test_split_deterministic_and_proportional(rng):
    shas = [IM.sha256_hex(rng.bytes(16)) for _ in range(4000)]
    a = [IM.assign_split(s, 0.2) for s in shas]
    assert a == [IM.assign_split(s, 0.2) for s in shas]
    frac = a.count(schema.EVAL_SPLIT) / len(a)
    assert 0.17 < frac < 0.23
    assert {IM.assign_split(s, 0.0) for s in shas} == {schema.TRAIN_SPLIT}
    # monotone: raising the fraction only moves images train -> eval, never back
    b = [IM.assign_split(s, 0.3) for s in shas]
    assert all(y == schema.EVAL_SPLIT for x, y in zip(a, b) if x == schema.EVAL_SPLIT)


# ------------------------------------------------------------------ tf.Example encoding

def test_encode_example_parses_as_tf_example(rng):
    example_pb2 = pytest.importorskip("tensorflow.core.example.example_pb2")
    feats = {"image": b"\x89PNG..", "height": 32, "neg": -3, "score": 0.5, "source": "a/b.jpg",
             "attr/multi": [1, 0, 1], "attr/hair_color": "black"}
    ex = example_pb2.Example.FromString(IM.encode_example(feats))
    f = ex.features.feature
    assert f["image"].bytes_list.value == [b"\x89PNG.."]
    assert f["height"].int64_list.value == [32] and f["neg"].int64_list.value == [-3]
    assert f["score"].float_list.value == [0.5]
    assert f["source"].bytes_list.value == [b"a/b.jpg"]
    assert f["attr/multi"].int64_list.value == [1, 0, 1]
    assert f["attr/hair_color"].bytes_list.value == [b"black"]
    # byte-identical to TF's own serialization (sorted map keys are deterministic there too)
    assert ex.SerializeToString(deterministic=True) == IM.encode_example(feats)


def test_example_features_schema(rng):
    data = enc(Image.fromarray(rgb_image(rng, 40, 48)), "PNG")
    p = IM.process_bytes(data, cfg(resolution=16, extra_resolutions="8"))
    f = IM.example_features(p, "x.zip!a.png", "ab" * 32, True, {"smile": 1})
    assert f[schema.HEIGHT] == 16 and f[schema.WIDTH] == 16
    assert (f[schema.ORIG_HEIGHT], f[schema.ORIG_WIDTH]) == (40, 48)
    assert f[schema.MIRRORED] == 1 and f[schema.attr_key("smile")] == 1
    from facegan.images import decode_png
    np.testing.assert_array_equal(decode_png(f[schema.IMAGE]), p.image)
    np.testing.assert_array_equal(decode_png(f[schema.image_key(8, 16)]), p.extra[8])


def test_channel_sums():
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = (4, 8, 12)
    s, q, n = IM.channel_sums(img)
    np.testing.assert_array_equal(s, [4, 8, 12])
    np.testing.assert_array_equal(q, [16, 64, 144])
    assert n == 4


# ------------------------------------------------------------------ inputs and archives

def test_enumerate_missing_and_empty(tmp_path):
    with pytest.raises(O.IngestError, match="does not exist") as e:
        L.enumerate_inputs(str(tmp_path / "nope"))
    assert "nope" in str(e.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(O.IngestError, match="empty directory"):
        L.enumerate_inputs(str(tmp_path / "empty"))


def test_enumerate_tree_sorted_with_skip(tmp_path):
    for p in ["b/2.jpg", "a/1.png", "a/z.txt", "c.zip", "labels.txt", ".hidden/x.jpg"]:
        f = tmp_path / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    got = L.enumerate_inputs(str(tmp_path), skip=[str(tmp_path / "labels.txt")])
    rel = [g[len(str(tmp_path)) + 1:] for g in got]
    assert rel == ["a/1.png", "a/z.txt", "b/2.jpg", "c.zip"]
    assert L.enumerate_inputs(str(tmp_path / "a" / "1.png")) == [str(tmp_path / "a" / "1.png")]


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz", ".tgz"])
def test_archives_members_named_with_bang(tmp_path, rng, suffix):
    members = {"faces/0001.png": enc(Image.fromarray(rgb_image(rng, 8, 8)), "PNG"),
               "0002.jpg": b"not really"}
    path = str(tmp_path / f"set{suffix}")
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("faces/", b"")
            for n, d in members.items():
                z.writestr(n, d)
    else:
        mode = "w:gz" if suffix.endswith("gz") else "w"
        with tarfile.open(path, mode) as t:
            for n, d in members.items():
                info = tarfile.TarInfo(n)
                info.size = len(d)
                t.addfile(info, io.BytesIO(d))
    assert L.is_archive(path)
    got = dict(A.iter_archive(path))
    assert got == {f"{path}!{n}": d for n, d in members.items()}


def test_broken_archive_is_unreadable(tmp_path):
    p = tmp_path / "bad.zip"
    p.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(O.Rejected) as e:
        list(A.iter_archive(str(p)))
    assert e.value.reason == O.UNREADABLE


# ------------------------------------------------------------------ labels

CELEBA_TXT = """3
5_o_Clock_Shadow Arched_Eyebrows Smiling Male
000001.jpg -1  1  1 -1
000002.jpg -1 -1  1 -1
000003.jpg  1 -1 -1  1
"""


def test_celeba_table(tmp_path):
    p = tmp_path / "list_attr_celeba.txt"
    p.write_text(CELEBA_TXT)
    names, table = LB.parse_celeba_attrs(str(p))
    assert names == ["5_o_clock_shadow", "arched_eyebrows", "smiling", "male"]
    assert table["000001.jpg"] == {"5_o_clock_shadow": 0, "arched_eyebrows": 1, "smiling": 1, "male": 0}
    assert table["000003.jpg"]["male"] == 1 and table["000003.jpg"]["smiling"] == 0
    lt = LB.load_labels(str(p))
    assert lt.kind == "celeba" and len(lt) == 3
    assert lt.lookup("/data/img/000002.jpg")["smiling"] == 1
    assert lt.lookup("faces.zip!img/000002.png")["smiling"] == 1   # by stem, inside an archive
    assert lt.lookup("/data/000009.jpg") is None


def test_celeba_csv_variant(tmp_path):
    p = tmp_path / "list_attr_celeba.csv"
    p.write_text("image_id,Smiling,Male\n000001.jpg,1,-1\n000002.jpg,-1,1\n")
    names, table = LB.parse_celeba_attrs(str(p))
    assert names == ["smiling", "male"] and table["000002.jpg"] == {"smiling": 0, "male": 1}


@pytest.mark.parametrize("text,msg", [
    ("4\nA B\nx.jpg 1 -1\n", "declares 4"),
    ("1\nA B\nx.jpg 1\n", "line 3"),
    ("1\nA B\nx.jpg 1 2\n", "line 3"),
])
def test_celeba_table_errors_name_file_and_line(tmp_path, text, msg):
    p = tmp_path / "attrs.txt"
    p.write_text(text)
    with pytest.raises(O.IngestError, match=msg) as e:
        LB.parse_celeba_attrs(str(p))
    assert "attrs.txt" in str(e.value)


CURTO = {"Gender": "Female", "Age": 25, "Ethnicity": "Asian", "Hair Colour": "Black",
         "Hair Style": "Long", "Eyes Colour": "Brown", "Facial Hair": False, "Glasses": True,
         "Visible Forehead": True, "Hair Covered": False, "Smile": True}


def test_json_directory_curto_zarza_style(tmp_path):
    d = tmp_path / "labels"
    d.mkdir()
    (d / "0001.json").write_text(json.dumps(CURTO))
    other = dict(CURTO, Age=31.5, Glasses=False)
    (d / "0002.json").write_text(json.dumps(other))
    lt = LB.load_labels(str(d))
    a = lt.lookup("/x/0001.jpg")
    assert a == {"gender": "Female", "age": 25.0, "ethnicity": "Asian", "hair_color": "Black",
                 "hair_style": "Long", "eyes_color": "Brown", "facial_hair": 0, "glasses": 1,
                 "visible_forehead": 1, "hair_covered": 0, "smile": 1}
    # age is int in one file and float in the other: one type (float) for the whole set
    assert isinstance(a["age"], float) and lt.lookup("0002.png")["age"] == 31.5
    assert lt.lookup("0002.png")["glasses"] == 0


def test_json_single_file_forms(tmp_path):
    p = tmp_path / "attrs.json"
    p.write_text(json.dumps([{"file": "a.jpg", "Smile": True, "facial hair": {"beard": False}}]))
    assert LB.load_labels(str(p)).lookup("a.jpg") == {"smile": 1, "facial_hair_beard": 0}
    p.write_text(json.dumps({"a.jpg": {"Smile": False}}))
    assert LB.load_labels(str(p)).lookup("dir/a.jpg") == {"smile": 0}
    p.write_text(json.dumps([{"Smile": True}]))
    with pytest.raises(O.IngestError, match="record 0"):
        LB.load_labels(str(p))


def test_labels_missing_path():
    with pytest.raises(O.IngestError, match="does not exist"):
        LB.load_labels("/no/such/labels.txt")


def test_max_pixels_is_the_one_limit(rng, monkeypatch):
    """PIL refuses images above 2 * Image.MAX_IMAGE_PIXELS before we see their size; a larger
    max_pixels must raise that limit (simulated with a small PIL limit: 64x64 > 2 * 1000)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = enc(Image.fromarray(rgb_image(rng, 64, 64)), "PNG")
    p = IM.process_bytes(data, cfg(max_pixels=10_000))
    assert p.image.shape == (32, 32, 3)
    assert reason_of(data, max_pixels=4000) == O.OVERSIZED      # ours still applies
    assert Image.MAX_IMAGE_PIXELS >= 10_000


def test_input_fingerprint_changes_with_names_sizes_mtimes(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x" * 10)
    (tmp_path / "b.png").write_bytes(b"y" * 20)
    fp = L.input_fingerprint(str(tmp_path))
    assert fp == L.input_fingerprint(str(tmp_path)) and fp.startswith("files:2,bytes:30,")
    os.utime(tmp_path / "a.png", ns=(1, 10**18))
    fp2 = L.input_fingerprint(str(tmp_path))
    assert fp2 != fp
    (tmp_path / "b.png").rename(tmp_path / "c.png")
    assert L.input_fingerprint(str(tmp_path)) not in (fp, fp2)
