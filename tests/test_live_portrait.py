"""`live` and `animate` show the whole portrait: the animated face pasted back into the avatar's photo
(feathered, the rest of the photo untouched) at the requested output size."""
from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
from skimage import data as skdata

import puppet
from core.media import frame_files


def changed_box(frame: np.ndarray, photo: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """|frame - photo| per pixel and the bounding box (y0, x0, y1, x1) of the pixels that differ."""
    diff = np.abs(frame.astype(int) - photo.astype(int)).max(-1)
    (y0, x0), (y1, x1) = np.argwhere(diff > 0).min(0), np.argwhere(diff > 0).max(0)
    return diff, (y0, x0, y1, x1)


def assert_pasted_face(frame: np.ndarray, photo: np.ndarray) -> None:
    """The model's frame pasted back (run with --no-detail: with detail, a frame near rest is the photo itself in
    much of the crop, core/detail.py, so the changed pixels would not outline the crop)."""
    diff, (y0, x0, y1, x1) = changed_box(frame, photo)
    # only a square around the astronaut's face changed (her eyes are near row 100, column 220); the rest of
    # the photo, shoulders and flag included, is the photo's own pixels
    assert abs((y1 - y0) - (x1 - x0)) <= 2 and y1 - y0 < 0.7 * photo.shape[0]
    assert y0 < 100 < y1 and x0 < 220 < x1
    assert diff[y1 + 1:].max(initial=0) == 0 and diff[:, x1 + 1:].max(initial=0) == 0
    # feathered seam: the crop's outermost pixels barely differ from the photo, its middle differs fully
    ring = np.concatenate([diff[y0, x0:x1 + 1], diff[y1, x0:x1 + 1], diff[y0:y1 + 1, x0], diff[y0:y1 + 1, x1]])
    side = y1 - y0
    middle = diff[y0 + side // 3:y1 - side // 3, x0 + side // 3:x1 - side // 3]
    assert ring.mean() < 0.2 * middle.mean()


def test_live_pastes_the_animated_face_into_the_whole_photo(tiny_fomm, astronaut_png, tmp_path):
    out = tmp_path / "frames"
    assert puppet.main(["live", "--avatar", str(astronaut_png), "--config", str(tiny_fomm[0]), "--checkpoint",
                        str(tiny_fomm[1]), "--driving", "synthetic:96x96", "--crop", "full", "--size", "512x512",
                        "--output", str(out), "--max-frames", "3", "--no-detail"]) == 0
    frames = [imageio.imread(f) for f in frame_files(out)]
    assert len(frames) == 3
    for frame in frames:
        assert frame.shape == (512, 512, 3)
        assert_pasted_face(frame, skdata.astronaut())
    # live's default adds the photo's detail: still only inside that crop
    detailed = tmp_path / "detailed"
    assert puppet.main(["live", "--avatar", str(astronaut_png), "--config", str(tiny_fomm[0]), "--checkpoint",
                        str(tiny_fomm[1]), "--driving", "synthetic:96x96", "--crop", "full", "--size", "512x512",
                        "--output", str(detailed), "--max-frames", "3"]) == 0
    _, (y0, x0, y1, x1) = changed_box(frames[-1], skdata.astronaut())
    for frame in map(imageio.imread, frame_files(detailed)):
        _, (dy0, dx0, dy1, dx1) = changed_box(frame, skdata.astronaut())
        assert y0 <= dy0 and x0 <= dx0 and dy1 <= y1 and dx1 <= x1


def test_animate_full_frame_and_size(tiny_fomm, astronaut_png, driving_mp4, tmp_path):
    out = tmp_path / "frames"
    assert puppet.main(["animate", "--avatar", str(astronaut_png), "--config", str(tiny_fomm[0]), "--checkpoint",
                        str(tiny_fomm[1]), "--driving", str(driving_mp4), "--full-frame", "--output", str(out),
                        "--no-detail"]) == 0
    frames = [imageio.imread(f) for f in frame_files(out)]
    assert len(frames) == 6
    for frame in frames:
        assert_pasted_face(frame, skdata.astronaut())
    # --size letterboxes: the 512x512 portrait in 200x100 is a centred 100x100 picture, black bars of 50
    boxed = tmp_path / "boxed"
    assert puppet.main(["animate", "--avatar", str(astronaut_png), "--config", str(tiny_fomm[0]), "--checkpoint",
                        str(tiny_fomm[1]), "--driving", str(driving_mp4), "--full-frame", "--size", "200x100",
                        "--output", str(boxed)]) == 0
    small = [imageio.imread(f) for f in frame_files(boxed)]
    assert all(f.shape == (100, 200, 3) and f[:, :50].max() == 0 and f[:, 150:].max() == 0 for f in small)
    assert small[0][:, 50:150].mean() > 40


def test_bad_size_is_one_line(capsys):
    assert puppet.main.__module__ == "puppet"
    try:
        puppet.main(["live", "--size", "12x"])
    except SystemExit as stop:
        assert stop.code == 2
    err = capsys.readouterr().err
    assert "give WIDTHxHEIGHT, e.g. 1280x720" in err and "Traceback" not in err


def test_animate_full_frame_carries_the_photos_detail_unless_no_detail(tiny_fomm, astronaut_png, driving_mp4,
                                                                        tmp_path):
    """The tiny model (random weights) draws a near-flat face: enlarged, it holds almost none of the photo's
    fine detail; with detail transfer (the default) the face region gets much of it back (its random motion
    stretches the photo and its occlusion map fades the band), and outside the crop both are the photo."""
    runs = {}
    for name, extra in (("detail", []), ("plain", ["--no-detail"])):
        out = tmp_path / name
        assert puppet.main(["animate", "--avatar", str(astronaut_png), "--config", str(tiny_fomm[0]), "--checkpoint",
                            str(tiny_fomm[1]), "--driving", str(driving_mp4), "--full-frame", "--output", str(out),
                            *extra]) == 0
        runs[name] = [imageio.imread(f) for f in frame_files(out)]
    photo = skdata.astronaut()
    _, (y0, x0, y1, x1) = changed_box(runs["plain"][-1], photo)
    face = slice(y0, y1 + 1), slice(x0, x1 + 1)

    def energy(image: np.ndarray) -> float:
        grey = image.astype(np.float32).mean(-1)
        return float(np.abs(grey[1:-1, 1:-1] * 4 - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2]
                            - grey[1:-1, 2:]).mean())
    plain, detail = energy(runs["plain"][-1][face]), energy(runs["detail"][-1][face])
    assert plain < 0.5 * detail and detail > 0.3 * energy(photo[face])
    outside = np.ones(photo.shape[:2], bool)
    outside[face] = False
    assert np.array_equal(runs["detail"][-1][outside], photo[outside])
