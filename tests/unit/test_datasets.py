"""Image lists: query boxes, dataset layouts, and errors that name the missing file."""

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrieval.data.datasets import (
    build_database_list,
    build_image_lists,
    canonical_name,
    fresh_lists,
    ground_truth_path,
    image_folders,
    list_files_read,
    load_dataset_ground_truth,
    query_box,
    warn_images_beside_jpg,
    with_distractors,
)
from retrieval.stages.lists import make_database_list, make_image_lists, small_images

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "landmarks-mini"


def test_query_box_rounds_like_pillow_and_clamps():
    # Python round() is half-to-even, as Pillow's crop uses: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2
    assert query_box([0.5, 1.5, 10.5, 20.5], 100, 100) == [0, 2, 10, 20]
    assert query_box([-3.2, -1, 120.7, 99.6], 100, 80) == [0, 0, 100, 80]
    # fractions of the image (a new user's trial: [0.1, 0.2, 0.9, 0.8] cropped a query to one pixel, AP 0, silently)
    with pytest.raises(ValueError, match=r"lies within \[0, 1\]: boxes are in pixels .*\(640x480\)$"):
        query_box([0.1, 0.2, 0.9, 0.8], 640, 480)
    assert query_box([0, 0, 1, 1], 2, 2) == [0, 0, 1, 1]  # an image of a few pixels: a one-pixel box may be meant
    with pytest.raises(ValueError, match="empty"):
        query_box([120, 10, 130, 20], 100, 100)
    # wholly at negative coordinates: outside the image, not fractions of it (helper-115's trial was told of fractions)
    with pytest.raises(ValueError, match=r"^query box \[-200, -100, -10, -5\] is empty inside a 640x360 image$"):
        query_box([-200, -100, -10, -5], 640, 360)


def test_query_box_matches_pillow_crop():
    im = Image.fromarray(np.arange(60 * 50, dtype=np.uint32).reshape(50, 60).astype(np.uint8))
    for box in ([3.5, 4.5, 20.49, 30.5], [10.2, 0.7, 59.5, 49.5]):
        x1, y1, x2, y2 = query_box(box, 60, 50)
        np.testing.assert_array_equal(np.asarray(im.crop(box)), np.asarray(im)[y1:y2, x1:x2])


def test_aliases():
    assert canonical_name("roxford") == "roxford5k" and canonical_name("rparis") == "rparis6k"
    assert canonical_name("landmarks-mini") == "landmarks-mini"


def _write_dataset(root, names, qnames, gnd=None):
    (root / "jpg").mkdir(parents=True)
    for n in names + qnames:
        Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(root / "jpg" / f"{n}.jpg")
    if gnd is not None:
        (root / "gnd.json").write_text(json.dumps({"imlist": names, "qimlist": qnames, "gnd": gnd}))


def test_missing_listed_image_is_named(tmp_path):
    root = tmp_path / "ds"
    _write_dataset(root, ["a", "b"], ["q"], [{"easy": [0], "hard": [], "junk": [], "bbx": [1, 1, 20, 20]}])
    (root / "jpg" / "b.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.jpg"):
        build_image_lists(root, "ds")
    # the photo is there as a PNG (a new user's trial was offered another photo, 'lego_model_05.jpg'): that file
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(root / "jpg" / "b.png")
    with pytest.raises(
        FileNotFoundError, match=r"b\.jpg; did you mean 'b\.png' \(the same name with another suffix\)\?"
    ):
        build_image_lists(root, "ds")


def test_a_missing_image_of_a_gnd_json_is_never_offered_a_name_the_lists_hold(tmp_path):
    """helper-97's trial: a deleted imlist image was offered another imlist name (a duplicate once taken), a renamed
    qimlist entry one of its own positives."""
    root = tmp_path / "ds"
    gnd = [{"easy": [0], "hard": [], "junk": [], "bbx": None}, {"easy": [2], "hard": [], "junk": [], "bbx": None}]
    _write_dataset(root, ["barn_01", "barn_02", "tower_01"], ["barn_11", "tower_11"], gnd)
    (root / "jpg" / "barn_01.jpg").unlink()
    with pytest.raises(FileNotFoundError) as e:
        build_image_lists(root, "ds")
    assert "barn_01.jpg" in str(e.value) and "did you mean" not in str(e.value)  # barn_02 is in imlist
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(root / "jpg" / "barn_03.jpg")
    with pytest.raises(FileNotFoundError, match=r"barn_01\.jpg; did you mean 'barn_03\.jpg'\?"):
        build_image_lists(root, "ds")
    (root / "jpg" / "barn_03.jpg").rename(root / "jpg" / "barn_01.jpg")
    # a query: never its own positive (tower_01 for tower_12), nor another query; a database image it is not a
    # positive of may be a query
    (root / "jpg" / "tower_11.jpg").unlink()
    meta = json.loads((root / "gnd.json").read_text())
    meta["qimlist"] = ["barn_11", "tower_1"]
    (root / "gnd.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError) as e:
        build_image_lists(root, "ds")
    assert "tower_1.jpg" in str(e.value) and "did you mean" not in str(e.value)
    meta["gnd"][1]["easy"] = [1]  # barn_02 its positive: tower_01 is offered
    (root / "gnd.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match=r"tower_1\.jpg; did you mean 'tower_01\.jpg'\?"):
        build_image_lists(root, "ds")


def test_a_ground_truth_left_beside_another_is_named_when_it_wins(tmp_path, caplog):
    """A gnd.json left beside an edited gnd.csv is the one used (the documented order): a warning names both, and
    an image the JSON lists that is missing is named with the file that listed it."""
    root = tmp_path / "gt"
    _write_dataset(root, ["a", "b"], ["q"], [{"easy": [0], "hard": [], "junk": [], "bbx": None}])
    (root / "gnd.csv").write_text("query,positive\njpg/q.jpg,jpg/b.jpg\n")
    with caplog.at_level("WARNING"):
        lists, gt = build_image_lists(root, "gt")
    assert gt.gnd[0]["easy"] == [0]  # the JSON's positive, not the CSV's
    assert "several ground truths; gnd.json is used, gnd.csv ignored" in caplog.text
    (root / "jpg" / "b.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 database image\(s\) listed in .*gt/gnd\.json but not found"):
        build_image_lists(root, "gt")


def test_a_revisitop_pickle_beside_an_equal_gnd_json_gives_no_warning(tmp_path, caplog):
    """revisitop-style folders (landmarks-mini) ship gnd.json and gnd_{dataset}.pkl with the same content: no warning
    on every run; a pickle that differs from the JSON used is still named."""
    root = tmp_path / "rv"
    gnd = [{"easy": [0], "hard": [], "junk": [], "bbx": [1.0, 1.0, 20.0, 20.0]}]
    _write_dataset(root, ["a", "b"], ["q"], gnd)
    raw = {"imlist": ["a", "b"], "qimlist": ["q"], "gnd": gnd}
    (root / "gnd_rv.pkl").write_bytes(pickle.dumps(raw))
    with caplog.at_level("WARNING"):
        assert ground_truth_path(root, "rv").name == "gnd.json"
    assert "several ground truths" not in caplog.text
    raw["gnd"] = [{**gnd[0], "easy": [1]}]
    (root / "gnd_rv.pkl").write_bytes(pickle.dumps(raw))
    with caplog.at_level("WARNING"):
        assert ground_truth_path(root, "rv").name == "gnd.json"
    assert "several ground truths; gnd.json is used, gnd_rv.pkl ignored" in caplog.text


def test_every_unreadable_image_is_named_at_once(tmp_path):
    """Under on_bad_image: error the listing names all unreadable files (fixing them one run at a time was the
    alternative); under skip they are listed as skipped, with size 0 x 0."""
    root = tmp_path / "photos"
    _write_dataset(root, ["a", "b"], [])
    (root / "jpg" / "empty.jpg").write_bytes(b"")
    (root / "jpg" / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match=r"2 unreadable image\(s\)") as err:
        build_image_lists(root, "photos")
    assert "empty.jpg" in str(err.value) and "notes.jpg" in str(err.value)
    # headers only: a file cut after its header passes here (a new user's trial fixed the named files, then met it at
    # extraction), so the message says so
    assert "a file cut short after its header is found only when extraction decodes it" in str(err.value)
    lists, _ = build_image_lists(root, "photos", on_bad_image="skip")
    assert sorted({s["name"] for s in lists["skipped"]}) == ["jpg/empty.jpg", "jpg/notes.jpg"]
    assert [(e["width"], e["height"]) for e in lists["db"]] == [(40, 30), (40, 30), (0, 0), (0, 0)]


def test_query_box_outside_the_image_names_the_file_and_query(tmp_path, caplog):
    """A box wholly outside its (40 x 30) query image is an error naming the ground-truth file and the query; one
    reaching outside is clamped, with a warning that names it."""
    root = tmp_path / "ds"
    gnd = [{"easy": [0], "hard": [], "junk": [], "bbx": [50, 40, 60, 50]}]
    _write_dataset(root, ["a"], ["q"], gnd)
    with pytest.raises(ValueError, match=r"gnd\.json: query 'q': query box \[50\.0, 40\.0, 60\.0, 50\.0\] is empty"):
        build_image_lists(root, "ds")
    gnd[0]["bbx"] = [-5, 2, 90, 20]
    (root / "gnd.json").write_text(json.dumps({"imlist": ["a"], "qimlist": ["q"], "gnd": gnd}))
    with caplog.at_level("WARNING"):
        lists, _ = build_image_lists(root, "ds")
    assert lists["query"][0]["crop"] == [0, 2, 40, 20]
    assert (
        "1 query box(es) reach outside their image" in caplog.text
        and "q [-5.0, 2.0, 90.0, 20.0] -> [0, 2, 40, 20]" in caplog.text
    )


def test_files_of_other_formats_are_left_out_with_a_warning(tmp_path, caplog):
    """A JPEG XL (not read here) is not listed, and the log names it; any case of a known suffix is listed."""
    root = tmp_path / "photos"
    _write_dataset(root, ["x"], [])
    (root / "jpg" / "x.jpg").rename(root / "jpg" / "X.JPEG")
    (root / "jpg" / "IMG_0001.jxl").write_bytes(b"\0" * 64)
    (root / "jpg" / "notes.txt").write_text("a dataset's own file: no warning")
    for sidecar in ("X.xmp", "X.JPEG.xmp", "IMG_0002.AAE", "x.pp3", "x.dop"):  # photo software's: no warning
        (root / "jpg" / sidecar).write_text("<x:xmpmeta/>")
    (root / "jpg" / "sift_gallery_local.hdf5").write_bytes(b"")  # an AMES export's descriptors: no warning either
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(root / "loose.jpg")  # beside jpg/: not scanned
    with caplog.at_level("WARNING"):
        lists, _ = build_image_lists(root, "photos")
    assert [e["name"] for e in lists["db"]] == ["jpg/X.JPEG"]
    assert "1 file(s) left out" in caplog.text and "IMG_0001.jxl" in caplog.text and "notes.txt" not in caplog.text
    assert "convert a photo to one to index it): IMG_0001.jxl" in caplog.text  # the remedy (helper-164)
    assert ".hdf5" not in caplog.text and ".xmp" not in caplog.text and ".AAE" not in caplog.text
    assert "1 image(s) beside jpg/ are not in the database, which is the images under jpg/: loose.jpg" in caplog.text
    # a name ending in a space is quoted: `a.jpg ` read as if a .jpg were left out (helper-135)
    (root / "jpg" / "IMG_0001.jxl").rename(root / "jpg" / "a.jpg ")
    caplog.clear()
    with caplog.at_level("WARNING"):
        build_image_lists(root, "photos")
    assert "1 file(s) left out, not an image format read here" in caplog.text and ": 'a.jpg '" in caplog.text


def test_query_photos_beside_jpg_are_not_warned_of_as_left_out(tmp_path, caplog):
    """gnd.csv's (or query_list.txt's) queries kept beside jpg/ are where they belong: a new user's trial got '2
    image(s) beside jpg/ are not in the database' for them. Another photo there is still named."""
    root = tmp_path / "photos"
    _write_dataset(root, ["a", "b"], [])
    for name in ("q1.jpg", "q2.jpg", "stray.jpg"):
        Image.fromarray(np.full((30, 40, 3), 60, np.uint8)).save(root / name)
    (root / "gnd.csv").write_text("query,positive\nq1.jpg,jpg/a.jpg\n./q2.jpg,jpg/b.jpg\n")
    with caplog.at_level("WARNING"):
        _, gt = build_image_lists(root, "photos")
    assert gt.qimlist == ["q1.jpg", "q2.jpg"]
    assert "1 image(s) beside jpg/ are not in the database, which is the images under jpg/: stray.jpg" in caplog.text
    # a quoted field, an absolute path in query_list.txt: the same photos
    (root / "gnd.csv").write_text(f'query,positive\n"q1.jpg",jpg/a.jpg\n{root / "q2.jpg"},jpg/b.jpg\n')
    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_images_beside_jpg(root)
    assert "1 image(s) beside jpg/" in caplog.text and "stray.jpg" in caplog.text
    (root / "gnd.csv").unlink()
    (root / "query_list.txt").write_text(f"{root / 'q1.jpg'}\nq2.jpg\n")
    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_images_beside_jpg(root)
    assert "1 image(s) beside jpg/" in caplog.text and "stray.jpg" in caplog.text
    (root / "query_list.txt").write_text("stray.jpg\n")
    caplog.clear()
    with caplog.at_level("WARNING"):
        build_image_lists(root, "photos")
    assert (
        "2 image(s) beside jpg/ are not in the database, which is the images under jpg/: q1.jpg, q2.jpg" in caplog.text
    )


def test_plain_folder_without_ground_truth(tmp_path):
    root = tmp_path / "photos"
    _write_dataset(root, ["x", "y", "z"], [])
    lists, gt = build_image_lists(root, "photos")
    assert gt is None
    assert [e["name"] for e in lists["db"]] == ["jpg/x.jpg", "jpg/y.jpg", "jpg/z.jpg"]
    assert len(lists["query"]) == 3 and all(q["crop"] is None for q in lists["query"])


def test_plain_folder_scan_takes_subfolders_and_skips_hidden_names(tmp_path):
    """Images in subfolders are listed; hidden names (macOS ``._x.jpg`` resource forks, ``.thumbnails/``) are not;
    every non-hidden folder is a source, so an image added to a subfolder is noticed (its folder's mtime)."""
    root = tmp_path / "photos"
    _write_dataset(root, ["x", "y"], [])
    sub = root / "jpg" / "2024" / "may"
    sub.mkdir(parents=True)
    (root / "jpg" / "y.jpg").rename(sub / "y.jpg")
    (root / "jpg" / "._x.jpg").write_bytes(b"\x00\x05\x16\x07 not an image")
    (root / "jpg" / ".thumbnails").mkdir()
    (root / "jpg" / ".thumbnails" / "x.jpg").write_bytes((root / "jpg" / "x.jpg").read_bytes())
    lists, _ = build_image_lists(root, "photos")
    assert [e["name"] for e in lists["db"]] == ["jpg/2024/may/y.jpg", "jpg/x.jpg"]
    assert image_folders(root) == [root / "jpg", root / "jpg" / "2024", sub]


def test_image_list_may_name_absolute_paths_and_paths_outside_the_folder(tmp_path):
    root = tmp_path / "photos"
    _write_dataset(root, ["x"], [])
    _write_dataset(tmp_path / "other", ["y", "z"], [])
    (root / "image_list.txt").write_text(f"jpg/x.jpg\n../other/jpg/y.jpg\n{tmp_path / 'other' / 'jpg' / 'z.jpg'}\n")
    lists, _ = build_image_lists(root, "photos")
    assert [e["name"] for e in lists["db"]] == ["jpg/x.jpg", "../other/jpg/y.jpg", "../other/jpg/z.jpg"]
    assert all(Path(e["path"]).is_file() for e in lists["db"])


def test_crop_option(tmp_path):
    root = tmp_path / "ds"
    _write_dataset(root, ["a"], ["q"], [{"easy": [0], "hard": [], "junk": [], "bbx": [1.5, 2.5, 20.2, 25.7]}])
    lists, _ = build_image_lists(root, "ds", crop_queries=True)
    assert lists["query"][0]["crop"] == [2, 2, 20, 26]
    lists, _ = build_image_lists(root, "ds", crop_queries=False)
    assert lists["query"][0]["crop"] is None and lists["query"][0]["bbx"] == [1.5, 2.5, 20.2, 25.7]


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets/landmarks-mini is absent")
def test_landmarks_mini_lists():
    lists, gt = build_image_lists(SHARED, "landmarks-mini")
    assert len(lists["db"]) == 85 and len(lists["query"]) == 16
    q = lists["query"][0]
    assert q["crop"] == query_box(gt.gnd[0]["bbx"], q["width"], q["height"])


def _lists(root, name, crop=True):
    return build_image_lists(root, name, crop)


def test_distractor_list_layout_and_stacking(tmp_path):

    base = tmp_path / "ds"
    _write_dataset(base, ["a", "b", "c"], ["q"], [{"easy": [0], "hard": [2], "junk": [1], "bbx": [1, 1, 20, 20]}])
    r1m = tmp_path / "revisitop1m"
    for n in ("00/d1.jpg", "01/d2.jpg"):
        (r1m / "jpg" / n).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(r1m / "jpg" / n)
    (r1m / "revisitop1m.txt").write_text("00/d1.jpg\n01/d2.jpg\n")
    dlists, dgt = build_image_lists(r1m, "revisitop1m")
    assert dgt is None and dlists["query"] == [] and [e["name"] for e in dlists["db"]] == ["00/d1.jpg", "01/d2.jpg"]
    assert dlists["db"][1]["width"] == 12 and dlists["db"][1]["path"].endswith("jpg/01/d2.jpg")

    blists, bgt = build_image_lists(base, "ds")
    lists, gnd = with_distractors(blists, bgt.to_json(), dlists, "ds+1m")
    assert lists["dataset"] == "ds+1m" and [e["name"] for e in lists["db"]] == ["a", "b", "c", "00/d1.jpg", "01/d2.jpg"]
    assert lists["query"] == blists["query"] and lists["parts"][0]["rows"] == 3 and lists["parts"][1]["rows"] == 2
    # ground-truth indices still point at the dataset's own rows; the distractors are in imlist, never relevant
    assert gnd["gnd"] == bgt.to_json()["gnd"] and gnd["imlist"][3:] == ["00/d1.jpg", "01/d2.jpg"]

    with pytest.raises(ValueError, match="also database images"):
        with_distractors(blists, bgt.to_json(), blists | {"query": []}, "ds+1m")
    with pytest.raises(ValueError, match="has no queries"):
        with_distractors(blists, bgt.to_json(), blists, "ds+1m")


def test_lists_from_a_database_listed_apart_equal_the_lists_built_in_one_piece(tmp_path):
    """database_list's db.json, read back by image_lists, gives the lists built in one piece (sizes, queries that
    are database images, skipped images under skip); a db.json of another folder and a dataset whose ground truth
    names its database are refused, naming them."""
    root = tmp_path / "photos"
    _write_dataset(root, ["a", "b", "c"], [])
    (root / "jpg" / "notes.jpg").write_text("not an image")
    (root / "query_list.txt").write_text("jpg/a.jpg\njpg/notes.jpg\n")
    for mode in ("skip", "error"):
        if mode == "error":
            with pytest.raises(ValueError, match=r"(?s)1 unreadable image\(s\).*notes\.jpg"):
                build_database_list(root, "photos", on_bad_image=mode)
            continue
        db = json.loads(json.dumps(build_database_list(root, "photos", on_bad_image=mode)))
        assert [e["name"] for e in db["db"]] == ["jpg/a.jpg", "jpg/b.jpg", "jpg/c.jpg", "jpg/notes.jpg"]
        assert db["db"][0]["width"] == 40 and db["db"][3]["width"] == 0
        whole, _ = build_image_lists(root, "photos", on_bad_image=mode)
        apart, _ = build_image_lists(root, "photos", on_bad_image=mode, database=db)
        assert apart == whole and [s["split"] for s in apart["skipped"]] == ["db", "query"]
    other = tmp_path / "other"
    _write_dataset(other, ["x"], [])
    with pytest.raises(ValueError, match=r"the database list is of .*photos, not of .*other"):
        build_image_lists(other, "other", database=db)
    named = tmp_path / "named"
    _write_dataset(named, ["a"], ["q"], [{"easy": [0], "hard": [], "junk": [], "bbx": None}])
    with pytest.raises(ValueError, match=r"named by .*gnd\.json, not listed apart"):
        build_database_list(named, "named")


def test_an_empty_database_and_a_listed_folder_are_named_as_such(tmp_path):
    root = tmp_path / "photos"
    (root / "jpg").mkdir(parents=True)
    with pytest.raises(
        FileNotFoundError, match=r"no images to index or search: .*photos/jpg holds no images \(files ending"
    ) as e:
        build_image_lists(root, "photos")
    assert str(e.value).endswith(f"; put images under {root / 'jpg'}, or list them in image_list.txt")
    # without jpg/ the folder itself is scanned, and said to be (helper-164: told of jpg/ alone)
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"put images in {bare} \(or in a jpg/ folder there\), or list them"):
        build_image_lists(bare, "bare")
    # a gnd.csv beside no images (its reader is reached this way beside a distractor list): the same remedy
    (bare / "gnd.csv").write_text("query,positive\nq.jpg,a.jpg\n")
    with pytest.raises(FileNotFoundError) as e:
        load_dataset_ground_truth(bare, bare / "gnd.csv")
    assert (
        str(e.value) == f"{bare / 'gnd.csv'}: the database is empty (put images in {bare} (or in a jpg/ folder "
        "there), or list them in image_list.txt)"
    )
    (root / "image_list.txt").write_text("# nothing yet\n")
    with pytest.raises(FileNotFoundError, match=r"no images to index or search: .*image_list\.txt lists no images"):
        build_image_lists(root, "photos")
    (root / "jpg" / "sub").mkdir()
    (root / "image_list.txt").write_text("jpg/sub\n")
    with pytest.raises(ValueError, match=r"image_list\.txt:1: 'jpg/sub' is a folder, not an image$"):
        build_image_lists(root, "photos")


def test_an_image_listed_twice_is_named_with_both_lines(tmp_path):
    root = tmp_path / "photos"
    _write_dataset(root, ["a", "b"], [])
    (root / "image_list.txt").write_text("jpg/a.jpg\n\njpg/b.jpg\n./jpg/a.jpg\n")
    with pytest.raises(ValueError, match=r"image_list\.txt:4: '\./jpg/a\.jpg' is already listed on line 1"):
        build_image_lists(root, "photos")


def test_one_file_listed_under_two_paths_is_warned_of(tmp_path, caplog):
    """A link to the folder and the folder itself, or two hard links, in one image_list.txt: two images, each the
    other's first match, and nothing said (helper-137). Warned of naming both lines, as a gnd.json's are."""
    root = tmp_path / "photos"
    _write_dataset(root, ["a", "b"], [])
    (tmp_path / "link").symlink_to(root)
    os.link(root / "jpg" / "b.jpg", root / "jpg" / "b2.jpg")
    (root / "image_list.txt").write_text(f"jpg/a.jpg\n{tmp_path / 'link' / 'jpg' / 'a.jpg'}\njpg/b.jpg\njpg/b2.jpg\n")
    with caplog.at_level("WARNING"):
        lists, _ = build_image_lists(root, "photos")
    assert len(lists["db"]) == 4  # listed as written: a collection may link duplicates to one stored copy
    assert (
        f"image_list.txt:2: '{tmp_path / 'link' / 'jpg' / 'a.jpg'}' and line 1's 'jpg/a.jpg' are one file"
        in caplog.text
    )
    assert "image_list.txt:4: 'jpg/b2.jpg' and line 3's 'jpg/b.jpg' are one file" in caplog.text


def test_a_comment_line_naming_a_photo_is_refused_with_both_readings(tmp_path):
    """A photo called '#barn.jpg' in a list file or gnd.csv read as a comment and vanished without a word (a new
    user's trial: 3 database images of 4, a query dropped); a line naming a file there is refused with the two ways
    to write it, a comment naming none (or with a space after #) stays a comment, and a query list of comments only
    is named (it failed later, naming an empty query store)."""
    root = tmp_path / "photos"
    _write_dataset(root, ["a", "b"], [])
    Image.fromarray(np.full((30, 40, 3), 9, np.uint8)).save(root / "#barn.jpg")
    (root / "image_list.txt").write_text("jpg/a.jpg\n#barn.jpg\njpg/b.jpg\n")
    with pytest.raises(ValueError, match=r"image_list\.txt:2: '#barn\.jpg' reads as a comment .*write \./#barn\.jpg"):
        build_image_lists(root, "photos")
    (root / "image_list.txt").write_text("jpg/a.jpg\n# barn.jpg\n#jpg/b.jpg, left out\n")
    lists, _ = build_image_lists(root, "photos")
    assert [e["name"] for e in lists["db"]] == ["jpg/a.jpg"]
    (root / "image_list.txt").write_text("jpg/a.jpg\n./#barn.jpg\n")
    lists, _ = build_image_lists(root, "photos")
    assert [e["name"] for e in lists["db"]] == ["jpg/a.jpg", "#barn.jpg"]
    (root / "query_list.txt").write_text("# none yet\n")
    with pytest.raises(ValueError, match=r"query_list\.txt: names no query images \(blank and # comment lines only\)"):
        build_image_lists(root, "photos")
    (root / "query_list.txt").unlink()
    (root / "image_list.txt").unlink()
    (root / "gnd.csv").write_text("query,positive\njpg/a.jpg,jpg/b.jpg\n#barn.jpg,jpg/a.jpg\n")
    with pytest.raises(ValueError, match=r"gnd\.csv:3: '#barn\.jpg' reads as a comment"):
        build_image_lists(root, "photos")
    (root / "gnd.csv").write_text("query,positive\njpg/a.jpg,jpg/b.jpg\n./#barn.jpg,jpg/a.jpg\n# a note\n")
    _, gt = build_image_lists(root, "photos")
    assert gt.qimlist == ["jpg/a.jpg", "#barn.jpg"]


def test_a_scan_follows_linked_folders_once_and_names_broken_links(tmp_path, caplog):
    """Symbolic links: a linked image and a linked folder's images are database images (a linked folder is watched
    like a real one); a link back up is not followed twice, nor a link to a folder or file inside (its images keep
    their real names, once); a broken link is left out with a warning naming it."""
    elsewhere = tmp_path / "elsewhere"
    _write_dataset(elsewhere, ["x", "y"], [])
    root = tmp_path / "photos"
    _write_dataset(root, ["a"], [])
    (root / "jpg" / "linked_dir").symlink_to(elsewhere / "jpg")
    (root / "jpg" / "link.jpg").symlink_to(elsewhere / "jpg" / "x.jpg")
    (root / "jpg" / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (elsewhere / "jpg" / "loop").symlink_to(root / "jpg")  # back up: the scan must end
    (root / "jpg" / "z_real").mkdir()
    Image.fromarray(np.full((30, 40, 3), 7, np.uint8)).save(root / "jpg" / "z_real" / "r.jpg")
    (root / "jpg" / "a_alias").symlink_to(root / "jpg" / "z_real")  # inside: r.jpg keeps its real name
    (root / "jpg" / "b_dupe.jpg").symlink_to(root / "jpg" / "a.jpg")  # a file link inside: listed once, as a.jpg
    with caplog.at_level("WARNING"):
        lists, _ = build_image_lists(root, "photos")
    names = [e["name"] for e in lists["db"]]
    assert names == ["jpg/a.jpg", "jpg/link.jpg", "jpg/linked_dir/x.jpg", "jpg/linked_dir/y.jpg", "jpg/z_real/r.jpg"]
    assert "1 broken symbolic link(s) left out: broken.jpg" in caplog.text
    assert image_folders(root) == [root / "jpg", root / "jpg" / "linked_dir", root / "jpg" / "z_real"]


def test_a_gnd_csv_database_keeps_revisitop_names_and_release_sizes(tmp_path):
    """gnd.csv's image_list.txt may name images revisitop-style, without a suffix (.jpg is added), and an AMES release
    folder's test_gallery.txt gives the size of a database image that is not on disk."""
    root = tmp_path / "mine"
    _write_dataset(root, ["a", "b"], [])
    Image.fromarray(np.full((20, 30, 3), 9, np.uint8)).save(root / "q.jpg")
    (root / "image_list.txt").write_text("jpg/a\njpg/b\njpg/c\n")  # c is not on disk
    (root / "test_gallery.txt").write_text("jpg/a.jpg,0,40,30\njpg/b.jpg,0,40,30\njpg/c.jpg,0,640,480\n")
    (root / "gnd.csv").write_text("query,positive\nq.jpg,jpg/a\n")
    lists, gt = build_image_lists(root, "mine")
    assert [e["name"] for e in lists["db"]] == ["jpg/a", "jpg/b", "jpg/c"] and gt.gnd[0]["easy"] == [0]
    assert lists["db"][0]["path"] == str(root.resolve() / "jpg" / "a.jpg")
    assert [(e["width"], e["height"]) for e in lists["db"]] == [(40, 30), (40, 30), (640, 480)]
    assert (lists["query"][0]["width"], lists["query"][0]["height"]) == (30, 20)


def test_a_pickle_named_after_another_dataset_is_named_not_ignored(tmp_path):
    """gnd_roxford5k.pkl in a folder 'oxford' made it a plain folder (metrics null) without naming the pickle."""
    d = tmp_path / "oxford"
    (d / "jpg").mkdir(parents=True)
    (d / "gnd_roxford5k.pkl").write_bytes(b"")
    with pytest.raises(ValueError, match=r"oxford: holds gnd_roxford5k.pkl, but .* dataset 'oxford' .*gnd_oxford.pkl"):
        ground_truth_path(d, "oxford")
    assert ground_truth_path(d, "roxford5k") == d / "gnd_roxford5k.pkl"
    assert ground_truth_path(d, "roxford") == d / "gnd_roxford5k.pkl"  # the alias reads the canonical name
    (d / "gnd.csv").write_text("query,positive\n")  # another ground truth there: that one is read
    assert ground_truth_path(d, "oxford") == d / "gnd.csv"
    # gnd.pkl (a new user's trial: rc 0, every image a query, metrics null, a "no ground truth" warning only)
    p = tmp_path / "mine"
    (p / "jpg").mkdir(parents=True)
    (p / "gnd.pkl").write_bytes(b"")
    with pytest.raises(ValueError, match=r"mine: holds gnd\.pkl, but .* dataset 'mine' is read from gnd_mine\.pkl"):
        ground_truth_path(p, "mine")


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets/landmarks-mini is absent")
def test_an_image_list_beside_revisitop_ground_truth_is_said_to_be_unread(tmp_path, caplog):
    """landmarks-mini ships an image_list.txt equal to its imlist (no warning); a shortened one changed nothing
    without a word (a new user's trial)."""
    d = tmp_path / "lm"
    d.mkdir()
    (d / "jpg").symlink_to(SHARED / "jpg")
    (d / "gnd.json").write_text((SHARED / "gnd.json").read_text())
    lines = (SHARED / "image_list.txt").read_text().splitlines()
    (d / "image_list.txt").write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING"):
        lists, _ = build_image_lists(d, "lm")
    assert "is not read" not in caplog.text and len(lists["db"]) == 85
    (d / "image_list.txt").write_text("\n".join(lines[:40]) + "\n")
    with caplog.at_level("WARNING"):
        lists, _ = build_image_lists(d, "lm")
    assert f"{d / 'image_list.txt'} is not read: the database is gnd.json's imlist (85 images)" in caplog.text
    assert len(lists["db"]) == 85


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets/landmarks-mini is absent")
def test_a_listed_folder_or_missing_image_is_named_with_its_line(tmp_path):
    """A listed folder or a missing file named the path only, where a duplicate named its line (a new user's trial)."""
    d = tmp_path / "c"
    (d / "jpg").mkdir(parents=True)
    (d / "jpg" / "barn_01.jpg").write_bytes((SHARED / "jpg" / "barn_01.jpg").read_bytes())
    (d / "image_list.txt").write_text("# my list\njpg/barn_01.jpg\n\njpg\njpg/nope.jpg\n")
    with pytest.raises(
        ValueError, match=r"image_list\.txt: 2 bad lines .*\n.*:4: 'jpg' is a folder, not an image\n.*:5: 'jpg/nope"
    ):
        build_database_list(d, "c")
    (d / "image_list.txt").write_text("# my list\njpg/barn_01.jpg\n\n\njpg/nope.jpg\n")
    with pytest.raises(FileNotFoundError, match=r"image_list\.txt:5: 'jpg/nope\.jpg' not found$"):
        build_database_list(d, "c")
    # a typo: the closest name in its folder (a misspelt positive in gnd.csv had it, a list entry did not)
    (d / "image_list.txt").write_text("jpg/barn_1.jpg\n")
    with pytest.raises(
        FileNotFoundError, match=r"image_list\.txt:1: 'jpg/barn_1\.jpg' not found; did you mean 'jpg/barn_01\.jpg'\?"
    ):
        build_database_list(d, "c")
    # ... but never a name the file already lists, on any line (taking the hint made a duplicate; helper-93's trial)
    for listing in ("jpg/barn_01.jpg\njpg/barn_1.jpg\n", "jpg/barn_1.jpg\n./jpg/barn_01.jpg\n"):
        (d / "image_list.txt").write_text(listing)
        with pytest.raises(FileNotFoundError) as e:
            build_database_list(d, "c")
        assert "'jpg/barn_1.jpg' not found" in str(e.value) and "did you mean" not in str(e.value), listing
    # beside a gnd.csv too (helper-166: its list's check offered line 1's image for line 2)
    (d / "gnd.csv").write_text("query,positive\nq.jpg,jpg/barn_01.jpg\n")
    (d / "image_list.txt").write_text("jpg/barn_01.jpg\njpg/barn_1.jpg\n")
    with pytest.raises(FileNotFoundError) as e:
        build_database_list(d, "c")
    assert "barn_1.jpg (line 2)" in str(e.value) and "did you mean" not in str(e.value), str(e.value)
    (d / "gnd.csv").unlink()
    # a broken link under the listed name: no hint naming the missing file itself
    (d / "jpg" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (d / "image_list.txt").write_text("jpg/barn_01.jpg\njpg/gone.jpg\n")
    with pytest.raises(FileNotFoundError) as e:
        build_database_list(d, "c")
    assert "image_list.txt:2: 'jpg/gone.jpg' not found" in str(e.value) and "did you mean" not in str(e.value)
    (d / "jpg" / "gone.jpg").unlink()
    (d / "image_list.txt").unlink()
    (d / "jpg" / "other.jpg").write_bytes((SHARED / "jpg" / "barn_02.jpg").read_bytes())
    (d / "gnd.csv").write_text("query,positive\njpg/barn_1.jpg,jpg/other.jpg\n")
    with pytest.raises(
        FileNotFoundError,
        match=r"gnd\.csv:2: query image 'jpg/barn_1\.jpg' not found .*; did you mean 'jpg/barn_01\.jpg'",
    ):
        build_image_lists(d, "c")
    # ... but never one of the query's own positives, on any of its rows (taking it made the query its own positive:
    # helper-97's trial)
    for rows in (
        "jpg/barn_1.jpg,jpg/barn_01.jpg\n",
        "jpg/barn_1.jpg,jpg/other.jpg\njpg/barn_1.jpg,jpg/barn_01.jpg,hard\n",
    ):
        (d / "gnd.csv").write_text("query,positive,kind\n" + rows)
        with pytest.raises(FileNotFoundError) as e:
            build_image_lists(d, "c")
        assert "query image 'jpg/barn_1.jpg' not found" in str(e.value) and "did you mean" not in str(e.value), rows


def test_every_bad_line_of_a_list_file_is_named_in_one_error_in_line_order(tmp_path):
    """A new user's trial: a query_list.txt with a typo, a duplicate and a folder took three failed runs, the
    duplicate on line 4 named before the typo on line 3."""
    root = tmp_path / "photos"
    _write_dataset(root, ["barn_01", "barn_02"], [])
    (root / "query_list.txt").write_text("jpg/barn_01.jpg\n# my queries\njpg/barn_2.jpg\n./jpg/barn_01.jpg\njpg\n")
    with pytest.raises(ValueError) as e:
        build_image_lists(root, "photos")
    lines = str(e.value).splitlines()
    assert lines[0] == f"{root / 'query_list.txt'}: 3 bad lines (fix them all, then run again):"
    assert lines[1].endswith("query_list.txt:3: 'jpg/barn_2.jpg' not found; did you mean 'jpg/barn_02.jpg'?")
    assert lines[2].endswith("query_list.txt:4: './jpg/barn_01.jpg' is already listed on line 1")
    assert lines[3].endswith("query_list.txt:5: 'jpg' is a folder, not an image") and len(lines) == 4
    # under on_bad_image: skip a missing photo is listed without features, as before: the duplicate alone is an error
    with pytest.raises(ValueError, match=r"query_list\.txt:4: '\./jpg/barn_01\.jpg' is already listed on line 1$"):
        build_image_lists(root, "photos", on_bad_image="skip")


def test_list_files_read_names_the_list_files_the_format_reads(tmp_path):
    assert list_files_read(tmp_path / "absent", "mine") == []
    (tmp_path / "jpg").mkdir()
    # a plain folder reads image_list.txt and query_list.txt; a boxes file is not its format's
    for name in ("image_list.txt", "query_boxes.csv", "notes.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "query_list.txt").mkdir()  # a folder of that name is no list
    assert list_files_read(tmp_path, "mine") == ["image_list.txt"]
    assert list_files_read(tmp_path, "mine", database=True) == ["image_list.txt"]
    # beside a gnd.csv: its boxes and database list, not query_list.txt
    (tmp_path / "gnd.csv").write_text("x")
    assert list_files_read(tmp_path, "mine") == ["gnd.csv", "image_list.txt", "query_boxes.csv"]
    (tmp_path / "query_boxes.csv").unlink()
    assert list_files_read(tmp_path, "mine") == ["gnd.csv", "image_list.txt"]
    # a revisitop ground truth reads nothing beside it: a user's image_list.txt there changes nothing
    (tmp_path / "gnd_mine.pkl").write_text("x")
    assert list_files_read(tmp_path, "mine") == ["gnd_mine.pkl"]


def test_fresh_lists_reuses_lists_only_while_their_sources_and_list_files_are_unchanged(tmp_path):
    """The plan reuses lists.json only when no source is newer, none is gone and the list files it was built with
    are the folder's; anything else (a damaged file included) means: build them again (None)."""
    root = tmp_path / "mine"
    (root / "jpg").mkdir(parents=True)
    photo = root / "jpg" / "a.jpg"
    photo.write_bytes(b"x")
    (root / "image_list.txt").write_text("jpg/a.jpg\n")
    lists, manifest = tmp_path / "lists.json", tmp_path / "manifest.json"
    lists.write_text(json.dumps({"db": [{"path": str(photo)}], "query": []}))
    manifest.write_text(json.dumps({"list_files": ["image_list.txt"]}))
    t = os.path.getmtime(lists)
    for p in (photo, root / "image_list.txt"):
        os.utime(p, (t - 10, t - 10))

    def sources(x):
        return [str(root / "image_list.txt")] + [e["path"] for e in x["db"]]

    def fresh():
        return fresh_lists(lists, sources, manifest, root, "mine")

    assert fresh() == {"db": [{"path": str(photo)}], "query": []}
    os.utime(photo, (t + 10, t + 10))  # a photo replaced after the lists were written
    assert fresh() is None
    os.utime(photo, (t - 10, t - 10))
    (root / "query_list.txt").write_text("jpg/a.jpg\n")  # a list file added: built with another set of them
    assert fresh() is None
    (root / "query_list.txt").unlink()
    assert fresh() is not None
    manifest.write_text(json.dumps({}))  # an older manifest without list_files: times decide
    (root / "image_list.txt").unlink()
    assert fresh() is None  # a source gone
    (root / "image_list.txt").write_text("jpg/a.jpg\n")
    os.utime(root / "image_list.txt", (t - 10, t - 10))
    assert fresh() is not None
    lists.write_text('{"db": [')  # damaged (an interrupted copy): built again, not an error naming nothing
    assert fresh() is None
    lists.write_text(json.dumps([1, 2]))  # not the lists' structure
    assert fresh() is None
    lists.unlink()
    assert fresh() is None


@pytest.mark.parametrize("misnamed", ["gnd.CSV", "gnd.csv.txt", "GND.json"])
def test_a_misnamed_ground_truth_is_named_with_the_name_meant(tmp_path, caplog, misnamed):
    """A ground truth saved as gnd.CSV or gnd.csv.txt (an editor's suffix) is not read (the folder is a plain one,
    its results have no metrics): a warning names the file and the name meant, where there was none."""
    root = tmp_path / "mine"
    (root / "jpg").mkdir(parents=True)
    for n in ("a", "b"):
        Image.fromarray(np.full((30, 40, 3), 9, np.uint8)).save(root / "jpg" / f"{n}.jpg")
    (root / misnamed).write_text("query,positive\njpg/a.jpg,jpg/b.jpg\n")
    with caplog.at_level("WARNING"):
        lists, gt = build_image_lists(root, "mine")
    assert gt is None
    meant = misnamed.lower()[: -len(".txt")] if misnamed.endswith(".txt") else misnamed.lower()
    assert (
        f"no ground truth is read, so the results have rankings and no metrics; found {misnamed}: did you mean "
        f"{meant}?" in caplog.text
    )


def test_an_empty_image_path_in_gnd_csv_names_its_column(tmp_path):
    """'gnd.csv:2: empty image path' did not say which of the row's names was missing (helper-93's trial)."""
    root = tmp_path / "photos"
    _write_dataset(root, ["barn_01", "barn_02"], ["q"])
    for row in (",jpg/barn_01.jpg", "  ,jpg/barn_01.jpg,hard"):
        (root / "gnd.csv").write_text(f"query,positive,kind\njpg/q.jpg,jpg/barn_02.jpg,easy\n{row}\n")
        with pytest.raises(ValueError, match=r"gnd\.csv:3: empty image path in column 'query'$"):
            build_image_lists(root, "photos")
    (root / "gnd.csv").write_text("query,positive\njpg/q.jpg,jpg/barn_02.jpg\n")
    (root / "query_boxes.csv").write_text("query,x1,y1,x2,y2\njpg/q.jpg,1,1,20,20\n ,1,1,20,20\n")
    with pytest.raises(ValueError, match=r"query_boxes\.csv:3: empty image path in column 'query'$"):
        build_image_lists(root, "photos")


def test_a_list_written_on_windows_reads_its_backslashes_as_separators(tmp_path):
    """jpg\\barn_01.jpg in image_list.txt was "not found" with no hint, where gnd.csv and query_boxes.csv read the
    same path (helper-99's trial)."""
    root = tmp_path / "photos"
    _write_dataset(root, ["barn_01", "barn_02", "q"], [])
    (root / "image_list.txt").write_text("jpg\\barn_01.jpg\r\n.\\jpg\\barn_02.jpg\r\n")
    (root / "query_list.txt").write_text("jpg\\q.jpg\n")
    lists, _ = build_image_lists(root, "photos")
    assert [e["name"] for e in lists["db"]] == ["jpg/barn_01.jpg", "jpg/barn_02.jpg"]
    assert [e["name"] for e in lists["query"]] == ["jpg/q.jpg"]
    # a file whose name holds a backslash (legal here) is read as named
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(root / "jpg" / "odd\\name.jpg")
    (root / "image_list.txt").write_text("jpg/odd\\name.jpg\n")
    assert [e["name"] for e in build_image_lists(root, "photos")[0]["db"]] == ["jpg/odd\\name.jpg"]
    (root / "image_list.txt").write_text("jpg\\barn_01.jpg\njpg/barn_01.jpg\n")  # one image, two spellings
    with pytest.raises(ValueError, match=r"image_list\.txt:2: 'jpg/barn_01\.jpg' is already listed on line 1"):
        build_image_lists(root, "photos")


def test_a_windows_absolute_path_in_a_list_is_named_as_one(tmp_path):
    """C:\\photos\\barn_01.jpg in image_list.txt was reported as "not found" under the dataset's folder, with nothing
    saying it is a Windows path (helper-101). Every such line is named, with the drive or server; a file of that very
    name under the folder is still read as named."""
    root = tmp_path / "photos"
    _write_dataset(root, ["barn_01", "barn_02", "q"], [])
    (root / "query_list.txt").write_text("jpg/q.jpg\n")
    (root / "image_list.txt").write_text(
        "C:\\photos\\jpg\\barn_01.jpg\njpg/barn_02.jpg\n\\\\nas\\share\\b.jpg\nd:/x.jpg\n"
    )
    with pytest.raises(ValueError) as e:
        build_image_lists(root, "photos")
    text = str(e.value)
    # the line as written (a repr doubled every backslash: helper-103)
    assert r"image_list.txt:1: 'C:\photos\jpg\barn_01.jpg' is a Windows path (on C:), which names no file" in text
    assert r"image_list.txt:3: '\\nas\share\b.jpg' is a Windows path (on \\nas)" in text
    assert "image_list.txt:4: 'd:/x.jpg' is a Windows path (on d:)" in text and ":2:" not in text
    assert f"write the images' paths relative to {root}" in text
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(root / "C:\\x.jpg")  # a legal name here
    (root / "image_list.txt").write_text("C:\\x.jpg\n")
    assert [e["name"] for e in build_image_lists(root, "photos")[0]["db"]] == ["C:\\x.jpg"]
    # x.jpg in a folder called "a:" (helper-103: refused by the first version of this check)
    (root / "a:").mkdir()
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(root / "a:" / "x.jpg")
    (root / "image_list.txt").write_text("a:\\x.jpg\n")
    assert [e["name"] for e in build_image_lists(root, "photos")[0]["db"]] == ["a:/x.jpg"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # a second spelling of a database image was a second entry, ranked beside the first and counted as a negative
        (lambda m: m["imlist"].append("a.jpg"), r"imlist\[0\] 'a' and imlist\[2\] 'a\.jpg' are one image"),
        (lambda m: m["imlist"].append("./b"), r"imlist\[1\] 'b' and imlist\[2\] '\./b' are one image"),
        # the same query twice under two spellings, with the same box and lists, was scored twice
        (
            lambda m: (m["qimlist"].append("q.jpg"), m["gnd"].append(dict(m["gnd"][0]))),
            r"qimlist\[0\] 'q' and qimlist\[1\] 'q\.jpg' are one image .* with the same box and lists",
        ),
    ],
)
def test_one_image_under_two_spellings_of_a_gnd_json_is_refused(tmp_path, edit, message):
    """helper-118's trial: 'lego_model_02' and 'lego_model_02.jpg' in one imlist failed at the merge with a misleading
    message, then gave AP 0.76 for 1.0 on the re-run, with no warning."""
    root = tmp_path / "ds"
    _write_dataset(root, ["a", "b"], ["q"], [{"easy": [0], "hard": [], "junk": [], "bbx": [1, 1, 20, 20]}])
    meta = json.loads((root / "gnd.json").read_text())
    edit(meta)
    if len(meta["gnd"]) < len(meta["qimlist"]):
        meta["gnd"].append({"easy": [1], "hard": [], "junk": []})
    (root / "gnd.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message) as e:
        build_image_lists(root, "ds")
    assert str(root / "gnd.json") in str(e.value)
    # the same photo as a second query with another box is another query (two objects): accepted
    meta = json.loads((root / "gnd.json").read_text())
    meta["imlist"], meta["qimlist"] = ["a", "b"], ["q", "q.jpg"]
    meta["gnd"] = [meta["gnd"][0], {**meta["gnd"][0], "bbx": [2, 2, 30, 25]}]
    (root / "gnd.json").write_text(json.dumps(meta))
    lists, _ = build_image_lists(root, "ds")
    assert [q["name"] for q in lists["query"]] == ["q", "q.jpg"]


def test_a_link_to_a_listed_photo_is_warned_about_and_scored_as_listed(tmp_path, caplog):
    """helper-120: a symlink beside its target ranked as a negative, unlabelled; but a benchmark may link duplicate
    photos to one stored copy, each entry labelled, so two paths to one file are a warning naming both, not a
    refusal (which would stop a whole evaluation)."""
    root = tmp_path / "ds"
    _write_dataset(root, ["a", "b"], ["q"], [{"easy": [0], "hard": [], "junk": [], "bbx": [1, 1, 20, 20]}])
    (root / "jpg" / "link_a.jpg").symlink_to("a.jpg")
    meta = json.loads((root / "gnd.json").read_text())
    meta["imlist"].append("link_a")
    (root / "gnd.json").write_text(json.dumps(meta))
    lists, _ = build_image_lists(root, "ds")
    assert [e["name"] for e in lists["db"]] == ["a", "b", "link_a"]
    assert "imlist[0] 'a' and imlist[2] 'link_a' are one file (a link, or a name in another case)" in caplog.text


def test_images_skipped_as_unreadable_are_not_called_thumbnails():
    """Under on_bad_image: skip an unreadable image's entry is 0 x 0: it is named as unreadable, not as a thumbnail
    too (helper-131 saw 'smaller than 160 pixels ... (0 x 0)')."""
    entries = [
        {"path": "bad.dng", "width": 0, "height": 0},
        {"path": "thumb.jpg", "width": 96, "height": 72},
        {"path": "photo.jpg", "width": 640, "height": 480},
        {"path": "unsized.jpg"},
    ]
    assert small_images(entries) == ["thumb.jpg (96 x 72)"]


def test_thumbnails_in_a_folder_are_named_once_each_side(tmp_path, caplog):
    """A folder holding thumbnails (shorter side under 160 pixels, EXIF's thumbnail size) gets a warning naming them,
    from the stage that lists them, each file once (a folder's queries are its own photos): the database by
    database_list, where the lists are made from its list; by image_lists where it lists the folder itself. Photos of
    160 pixels and more are not named."""
    jpg = tmp_path / "coll" / "jpg"
    jpg.mkdir(parents=True)
    for name, size in [("thumb.jpg", (96, 72)), ("tall.jpg", (120, 400)), ("photo.jpg", (640, 480)),
                       ("edge.jpg", (213, 160))]:  # fmt: skip
        Image.new("RGB", size, (90, 120, 150)).save(jpg / name)
    with caplog.at_level("WARNING"):
        make_database_list(tmp_path / "coll", "coll", tmp_path / "db.json", tmp_path / "db.m.json", "v", "cpu")
    said = [r.getMessage() for r in caplog.records if "thumbnails?" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("coll: 2 image(s) smaller than 160 pixels on their shorter side")
    assert "thumb.jpg (96 x 72)" in said[0] and "tall.jpg (120 x 400)" in said[0]
    assert "photo.jpg" not in said[0] and "edge.jpg" not in said[0]
    caplog.clear()
    with caplog.at_level("WARNING"):  # the collection's lists from its database list: not named again
        make_image_lists(tmp_path / "coll", "coll", True, tmp_path / "lists.json", tmp_path / "gnd.json",
                         tmp_path / "l.m.json", "v", "cpu", database=tmp_path / "db.json")  # fmt: skip
    assert not [r for r in caplog.records if "thumbnails?" in r.getMessage()]
    with caplog.at_level("WARNING"):  # a folder listed at once: its own thumbnails
        make_image_lists(tmp_path / "coll", "coll", True, tmp_path / "lists2.json", tmp_path / "gnd2.json",
                         tmp_path / "l2.m.json", "v", "cpu")  # fmt: skip
    assert sum("coll: 2 image(s) smaller than 160" in r.getMessage() for r in caplog.records) == 1
