"""Ray-cast synthetic LiDAR objects of the classes a robot cares about, for training PointNet.

Each object is built from primitives (boxes with a heading, upright cylinders, spheres) at a
realistic size, placed 3-35 m from the sensor on a flat ground 1.0-2.0 m below it, and seen by
the real beam pattern of one supported sensor: the VLP-16's and HDL-32E's nominal laser
elevations (lidar/src/velodyne.rs) or the OS1-64's from the metadata committed beside its
capture (lidar/tests/fixtures/ouster_example.json), at the sensor's azimuth step. Every ray
keeps its nearest hit, so the object shadows itself; the ground and, in 40% of the views, an
occluder between the sensor and the object take their share of the rays; foliage lets rays
through and returns them late; ranges get noise and a few returns drop out. The points then
go through what lookout does to a cluster (lidar/src/process): ground band removed (0.15 m),
5 cm voxel grid, N points sampled, centred, scaled into the unit sphere.

Also gives each view's principal-axis box (as lidar/src/process/object.rs computes it), from
which train.py derives the size limits the classifier enforces.

Everything derives from one seed.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

CLASSES = ["car", "pedestrian", "cyclist", "pole", "vegetation", "wall"]
SENSORS = ["vlp16", "hdl32e", "os1-64"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
_HDL32E = [-30.67, -9.33, -29.33, -8.0, -28.0, -6.67, -26.67, -5.33, -25.33, -4.0, -24.0, -2.67, -22.67,
           -1.33, -21.33, 0.0, -20.0, 1.33, -18.67, 2.67, -17.33, 4.0, -16.0, 5.33, -14.67, 6.67, -13.33,
           8.0, -12.0, 9.33, -10.67, 10.67]


def beam_pattern(sensor):
    """(elevations in degrees, azimuth step in degrees) of a supported sensor."""
    if sensor == "vlp16":
        return np.arange(-15.0, 15.1, 2.0), 0.2
    if sensor == "hdl32e":
        return np.array(_HDL32E), 0.16
    meta = json.loads((ROOT / "lidar/tests/fixtures/ouster_example.json").read_text())
    return np.array(meta["beam_altitude_angles"]), 360.0 / 1024


# Primitives: ("box", centre[3], size[3], yaw), ("cyl", base[3], radius, height),
# ("sph", centre[3], radius). Objects are lists of them with their base at z = 0.

def _hit_box(o, d, centre, size, yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    rel = o - centre
    lo = np.stack([rel[..., 0] * c + rel[..., 1] * s, -rel[..., 0] * s + rel[..., 1] * c, rel[..., 2]], -1)
    ld = np.stack([d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c, d[..., 2]], -1)
    half = np.asarray(size) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - lo) / ld
        t2 = (half - lo) / ld
    t1 = np.where(np.abs(ld) < 1e-12, np.where(np.abs(lo) <= half, -np.inf, np.inf), t1)
    t2 = np.where(np.abs(ld) < 1e-12, np.where(np.abs(lo) <= half, np.inf, -np.inf), t2)
    near = np.minimum(t1, t2).max(-1)
    far = np.maximum(t1, t2).min(-1)
    return np.where((near <= far) & (near > 0), near, np.inf)


def _hit_cyl(o, d, base, radius, height):
    ox, oy = o[..., 0] - base[0], o[..., 1] - base[1]
    a = d[..., 0] ** 2 + d[..., 1] ** 2
    b = 2 * (ox * d[..., 0] + oy * d[..., 1])
    c = ox ** 2 + oy ** 2 - radius ** 2
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    z = o[..., 2] + t * d[..., 2]
    ok = (disc >= 0) & (a > 1e-12) & (t > 0) & (z >= base[2]) & (z <= base[2] + height)
    return np.where(ok, t, np.inf)


def _hit_sph(o, d, centre, radius):
    rel = o - centre
    b = (rel * d).sum(-1)
    c = (rel * rel).sum(-1) - radius ** 2
    disc = b * b - c
    t = -b - np.sqrt(np.maximum(disc, 0))
    return np.where((disc >= 0) & (t > 0), t, np.inf)


def _hit(prim, o, d):
    kind = prim[0]
    if kind == "box":
        return _hit_box(o, d, prim[1], prim[2], prim[3])
    if kind == "cyl":
        return _hit_cyl(o, d, prim[1], prim[2], prim[3])
    return _hit_sph(o, d, prim[1], prim[2])


def _person(rng, height, seated=False):
    """Legs, torso, head and arms of a person `height` tall standing at the origin (x ahead)."""
    leg, torso = 0.47 * height, 0.33 * height
    width = rng.uniform(0.34, 0.48)
    stride = 0.0 if seated else rng.uniform(0.0, 0.3)
    parts = []
    if not seated:
        parts += [("cyl", [stride / 2, -width / 4, 0], rng.uniform(0.06, 0.09), leg),
                  ("cyl", [-stride / 2, width / 4, 0], rng.uniform(0.06, 0.09), leg)]
    parts += [("box", [0, 0, leg + torso / 2], [rng.uniform(0.2, 0.3), width, torso], 0.0),
              ("sph", [0, 0, leg + torso + 0.11], rng.uniform(0.09, 0.12)),
              ("cyl", [0, -width / 2 - 0.05, leg + torso * 0.1], 0.045, torso * 0.85),
              ("cyl", [0, width / 2 + 0.05, leg + torso * 0.1], 0.045, torso * 0.85)]
    if rng.uniform() < 0.3:  # a backpack
        parts.append(("box", [-0.2, 0, leg + torso * 0.6], [0.15, width * 0.8, torso * 0.6], 0.0))
    return parts


def make_object(rng, name):
    """Primitives of one object of class `name`, base at z = 0, heading along x."""
    if name == "car":
        length, width = rng.uniform(3.6, 5.2), rng.uniform(1.6, 2.0)
        clearance, body = rng.uniform(0.15, 0.3), rng.uniform(0.55, 0.85)
        van = rng.uniform() < 0.25
        cabin_len = length * (rng.uniform(0.75, 0.9) if van else rng.uniform(0.45, 0.6))
        cabin_h = rng.uniform(0.8, 1.1) if van else rng.uniform(0.4, 0.65)
        wheel = rng.uniform(0.3, 0.38)
        parts = [("box", [0, 0, clearance + body / 2], [length, width, body], 0.0),
                 ("box", [-length * 0.05, 0, clearance + body + cabin_h / 2],
                  [cabin_len, width * 0.9, cabin_h], 0.0)]
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(("box", [sx * length * 0.32, sy * (width / 2 - 0.12), wheel],
                              [2 * wheel, 0.22, 2 * wheel], 0.0))
        return parts
    if name == "pedestrian":
        return _person(rng, rng.uniform(1.45, 1.95))
    if name == "cyclist":
        length = rng.uniform(1.6, 1.85)
        wheel = rng.uniform(0.3, 0.36)
        parts = []
        # Wheels as rings of small spheres (spokes let rays through), frame as thin bars.
        for cx in (-length / 2 + wheel, length / 2 - wheel):
            for a in np.linspace(0, 2 * np.pi, 14, endpoint=False):
                parts.append(("sph", [cx + wheel * np.cos(a), 0, wheel + wheel * np.sin(a)], 0.035))
        parts.append(("box", [0, 0, wheel + 0.25], [length - 2 * wheel, 0.05, 0.05], 0.0))
        parts.append(("box", [-0.15, 0, wheel + 0.1], [0.05, 0.05, 0.45], 0.0))
        parts.append(("box", [length / 2 - wheel - 0.05, 0, wheel + 0.35], [0.05, 0.5, 0.05], 0.0))
        rider = _person(rng, rng.uniform(1.5, 1.9), seated=True)
        lift = wheel + 0.45 - 0.47 * 1.7
        for p in rider:
            p = list(p)
            p[1] = [p[1][0] - 0.1, p[1][1], p[1][2] + lift]
            parts.append(tuple(p))
        parts += [("cyl", [-0.05, -0.12, wheel], 0.06, 0.5), ("cyl", [0.1, 0.12, wheel + 0.1], 0.06, 0.45)]
        return parts
    if name == "pole":
        radius = rng.uniform(0.04, 0.35)
        height = rng.uniform(2.5, 9.0)
        parts = [("cyl", [0, 0, 0], radius, height)]
        if radius < 0.15 and rng.uniform() < 0.4:  # a sign on a post
            parts.append(("box", [0.05, 0, height - 0.4], [0.04, rng.uniform(0.4, 0.9), 0.6], 0.0))
        return parts
    if name == "vegetation":
        length = rng.uniform(0.6, 6.0)
        height = rng.uniform(0.5, 2.5)
        tree = rng.uniform() < 0.35
        base = rng.uniform(1.8, 3.0) if tree else 0.0
        parts = []
        if tree:
            parts.append(("cyl", [0, 0, 0], rng.uniform(0.08, 0.25), base + 0.3))
            length = rng.uniform(1.5, 5.0)
            height = rng.uniform(1.5, 4.0)
        for _ in range(int(np.clip(length * height * 4, 4, 40))):
            r = rng.uniform(0.15, 0.6) * min(1.0, height)
            parts.append(("sph", [rng.uniform(-length / 2, length / 2), rng.uniform(-0.4, 0.4) * min(length, 1.5),
                                  base + rng.uniform(r * 0.6, max(height - r * 0.6, r * 0.7))], r))
        return parts
    # wall / building facade
    length = rng.uniform(3.0, 30.0)
    height = rng.uniform(1.0, 8.0)
    thickness = rng.uniform(0.1, 0.5) if height < 3 else rng.uniform(0.3, 10.0)
    parts = [("box", [0, 0, height / 2], [length, thickness, height], 0.0)]
    if rng.uniform() < 0.3:  # a corner: a second wing
        wing = rng.uniform(2.0, 10.0)
        parts.append(("box", [length / 2, wing / 2, height / 2], [thickness, wing, height], 0.0))
    return parts


def _place(parts, offset, yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    placed = []
    for p in parts:
        x, y, z = p[1]
        centre = np.array([offset[0] + x * c - y * s, offset[1] + x * s + y * c, offset[2] + z])
        if p[0] == "box":
            placed.append(("box", centre, p[2], p[3] + yaw))
        elif p[0] == "cyl":
            placed.append(("cyl", centre, p[2], p[3]))
        else:
            placed.append(("sph", centre, p[2]))
    return placed


def pca_box_size(points):
    """[along the principal axis, across, height] of the box lookout fits (process/object.rs)."""
    xy = points[:, :2] - points[:, :2].mean(0)
    cxx, cyy, cxy = (xy[:, 0] ** 2).sum(), (xy[:, 1] ** 2).sum(), (xy[:, 0] * xy[:, 1]).sum()
    yaw = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
    c, s = np.cos(yaw), np.sin(yaw)
    along = points[:, 0] * c + points[:, 1] * s
    across = -points[:, 0] * s + points[:, 1] * c
    return np.array([np.ptp(along), np.ptp(across), np.ptp(points[:, 2])])


def scan_object(rng, label, sensor, num_points=256):
    """One view of a random object of class `label` by `sensor`: (normalised points, box size),
    or None when too few points are left (far, hidden or out of the beams)."""
    name = CLASSES[label]
    height = rng.uniform(1.0, 2.0)
    distance = rng.uniform(3.0, 35.0)
    bearing = rng.uniform(-np.pi, np.pi)
    centre = np.array([distance * np.cos(bearing), distance * np.sin(bearing), -height])
    parts = _place(make_object(rng, name), centre, rng.uniform(-np.pi, np.pi))
    # The object's angular window: its primitives' bounds seen from the sensor.
    r = max(np.hypot(*(np.asarray(p[1][:2]) - centre[:2])) + (np.linalg.norm(p[2][:2]) / 2 if p[0] == "box" else p[2])
            for p in parts)
    half = np.degrees(np.arcsin(min(0.999, (r + 0.2) / distance)))
    elevations, step = beam_pattern(sensor)
    azimuths = np.arange(np.degrees(bearing) - half, np.degrees(bearing) + half, step)
    azimuths += rng.uniform(0, step)
    el, az = np.meshgrid(np.radians(elevations), np.radians(azimuths), indexing="ij")
    d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
    o = np.zeros_like(d)
    t_obj = np.full(len(d), np.inf)
    for p in parts:
        t = _hit(p, o, d)
        if name == "vegetation" and p[0] == "sph":
            # Foliage: some rays pass through a crown, the others return from inside it.
            t = np.where(rng.uniform(size=len(t)) < 0.3, np.inf, t + rng.uniform(0, 0.3, len(t)) * p[2])
        t_obj = np.minimum(t_obj, t)
    # The ground and an occluder in front take their rays.
    with np.errstate(divide="ignore"):
        t_ground = np.where(d[:, 2] < -1e-6, -height / d[:, 2], np.inf)
    t_block = np.full(len(d), np.inf)
    if rng.uniform() < 0.4:
        at = distance * rng.uniform(0.3, 0.8)
        side = np.radians(np.degrees(bearing) + rng.uniform(-half, half))
        occ = _place([("box", [0, 0, rng.uniform(0.4, 1.5) / 2], [rng.uniform(0.3, 2.0), rng.uniform(0.3, 2.0),
                                                                rng.uniform(0.4, 1.8)], 0.0)],
                     [at * np.cos(side), at * np.sin(side), -height], rng.uniform(-np.pi, np.pi))
        t_block = _hit(occ[0], o, d)
    seen = np.isfinite(t_obj) & (t_obj < t_ground) & (t_obj < t_block) & (t_obj < 40.0)
    seen &= rng.uniform(size=len(d)) > rng.uniform(0.0, 0.08)  # dropped returns
    t = t_obj[seen] + rng.normal(0, rng.uniform(0.01, 0.03), seen.sum())
    points = d[seen] * t[:, None]
    points = points[points[:, 2] > -height + 0.15]  # the ground band lookout removes
    if len(points) < 12:
        return None
    # 5 cm voxel grid, one centroid per voxel (process/voxel.rs).
    keys = np.floor(points / 0.05).astype(np.int64)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    sums = np.zeros((inverse.max() + 1, 3))
    np.add.at(sums, inverse, points)
    points = sums / np.bincount(inverse)[:, None]
    if len(points) < 10:
        return None
    return normalise(rng, points, num_points), pca_box_size(points)


def normalise(rng, points, num_points):
    """Same as lookout's sample_normalised: sample N, centre, scale into the unit sphere."""
    if len(points) >= num_points:
        idx = rng.permutation(len(points))[:num_points]
    else:
        idx = np.concatenate([np.arange(len(points)), rng.integers(0, len(points), num_points - len(points))])
    sample = points[idx]
    sample = sample - sample.mean(axis=0)
    radius = np.linalg.norm(sample, axis=1).max()
    return (sample / max(radius, 1e-9)).astype(np.float32)


def make_split(seed, per_class, num_points=256, sensors=SENSORS):
    """`per_class` views of every class, spread evenly over `sensors`. Returns points [M, N, 3],
    labels [M], sensor index [M] and box sizes [M, 3]."""
    rng = np.random.default_rng(seed)
    clouds, labels, which, sizes = [], [], [], []
    for label in range(len(CLASSES)):
        for k in range(per_class):
            sensor = sensors[k % len(sensors)]
            while True:
                view = scan_object(rng, label, sensor, num_points)
                if view is not None:
                    break
            clouds.append(view[0])
            sizes.append(view[1])
            labels.append(label)
            which.append(SENSORS.index(sensor))
    order = rng.permutation(len(labels))
    return (np.stack(clouds)[order], np.array(labels, dtype=np.int32)[order],
            np.array(which, dtype=np.int32)[order], np.stack(sizes)[order].astype(np.float32))


if __name__ == "__main__":
    import time

    start = time.time()
    x, y, s, sizes = make_split(0, 30)
    print(x.shape, np.bincount(y), np.bincount(s), f"{time.time() - start:.1f}s")
    for i, c in enumerate(CLASSES):
        print(f"{c:11s} largest box {sizes[y == i].max(0).round(2)}")
