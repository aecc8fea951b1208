"""Landmark masks of the mouth and eyes: where they are, how far they grow, and their cache file."""
import numpy as np

from training.face_masks import landmark_mask, load_masks, save_masks


def square_face() -> np.ndarray:
    """68 landmarks with eyes 20 pixels apart (centres at x 10 and 30, y 10) and the mouth on the square
    [14, 26] x [30, 36]; the other points far away on the jaw line, outside every region."""
    marks = np.full((68, 2), 60.0)
    marks[36:42] = [[8, 10], [10, 9], [12, 10], [12, 10], [10, 11], [8, 10]]
    marks[42:48] = marks[36:42] + [20, 0]
    marks[48:68] = [[14, 30], [26, 30], [26, 36], [14, 36]] * 5
    return marks


def test_mask_covers_mouth_and_eyes_grown_by_a_tenth_of_the_eye_distance():
    mask = landmark_mask(square_face(), (64, 64))
    assert mask[33, 20] and mask[10, 10] and mask[10, 30]  # mouth inside, both eyes
    assert mask[30 - 2, 20] and not mask[30 - 3, 20]  # grown by round(0.1 * 20) = 2 pixels
    assert not mask[20, 20] and not mask[60, 60]  # cheeks and the rest of the face are not weighed


def test_no_face_gives_an_empty_mask_and_masks_survive_the_cache(tmp_path):
    assert not landmark_mask(None, (64, 48)).any()
    masks = np.random.default_rng(0).random((3, 20, 13)) > 0.5
    save_masks(tmp_path / "m.npz", masks)
    np.testing.assert_array_equal(load_masks(tmp_path / "m.npz"), masks)


def test_one_detector_pass_writes_landmarks_and_masks_of_each_clip_once(tmp_path):
    """A clip folder (and a link to it) gets both files from one pass; frames without a face are NaN."""
    import imageio.v2 as imageio

    from training.face_masks import LANDMARK_FILE, MASK_FILE, load_landmarks, write_clip_masks

    clip = tmp_path / "train" / "clip"
    clip.mkdir(parents=True)
    for i in range(3):
        imageio.imwrite(clip / f"{i:05d}.png", np.full((64, 64, 3), 40 * i, np.uint8))
    (tmp_path / "train" / "link").symlink_to(clip)
    calls = []

    def detector(frame):
        calls.append(frame)
        return None if frame.mean() > 0.3 else square_face()  # the third frame (80/255) has no face
    assert write_clip_masks(tmp_path, (64, 64), detector=detector) == (1, 1)
    assert len(calls) == 3
    marks, size = load_landmarks(clip / LANDMARK_FILE)
    assert size == (64, 64)
    np.testing.assert_allclose(marks[:2], [square_face()] * 2)
    assert np.isnan(marks[2]).all()
    np.testing.assert_array_equal(load_masks(clip / MASK_FILE)[0], landmark_mask(square_face(), (64, 64)))
    assert write_clip_masks(tmp_path, (64, 64), detector=detector) == (0, 0) and len(calls) == 3
