"""Reproducible synthetic point-cloud dataset for training lookout's PointNet.

No labelled LiDAR set can be had here, so objects are generated: boxes, cylinders, spheres,
cones, planes (wall segments), person-like and car-like composites. Each object is placed
3-15 m from a simulated spinning LiDAR (16 or 32 rings), only the surface facing the sensor is
kept (self-occlusion), only the surface near the sensor's ring elevations is kept (scan lines,
as a real scan shows them), a random sector may be cut away (occlusion by something in front),
range noise is added, and the result is normalised exactly as lookout does at run time
(lidar/src/process/object.rs): N points sampled, centred on their centroid, scaled into the
unit sphere. Everything derives from one seed.
"""

from __future__ import annotations

import numpy as np

CLASSES = ["box", "cylinder", "sphere", "cone", "plane", "person", "car"]
SENSOR_HEIGHT_M = 1.7


def _box_surface(rng, size, n):
    """Points and outward normals on a box centred at 0 with edge lengths `size`."""
    size = np.asarray(size, dtype=np.float64)
    areas = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]] * 2)
    face = rng.choice(6, size=n, p=areas / areas.sum())
    uv = rng.uniform(-0.5, 0.5, size=(n, 3)) * size
    axis = face % 3
    sign = np.where(face < 3, 1.0, -1.0)
    uv[np.arange(n), axis] = sign * size[axis] / 2
    normals = np.zeros((n, 3))
    normals[np.arange(n), axis] = sign
    return uv, normals


def _cylinder_surface(rng, radius, height, n, caps=True):
    """Vertical cylinder standing on z = 0."""
    side = 2 * np.pi * radius * height
    cap = np.pi * radius**2 if caps else 0.0
    on_side = rng.uniform(size=n) < side / (side + cap)
    theta = rng.uniform(0, 2 * np.pi, size=n)
    r = np.where(on_side, radius, radius * np.sqrt(rng.uniform(size=n)))
    z = np.where(on_side, rng.uniform(0, height, size=n), height)
    pts = np.stack([r * np.cos(theta), r * np.sin(theta), z], axis=1)
    normals = np.where(on_side[:, None], np.stack([np.cos(theta), np.sin(theta), np.zeros(n)], 1), [0, 0, 1.0])
    return pts, normals


def _sphere_surface(rng, radius, n):
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v * radius + [0, 0, radius], v


def _cone_surface(rng, radius, height, n):
    """Upright cone on z = 0 (a traffic cone, a bollard top)."""
    theta = rng.uniform(0, 2 * np.pi, size=n)
    t = np.sqrt(rng.uniform(size=n))  # area grows towards the base
    r = radius * t
    z = height * (1 - t)
    slope = radius / height
    pts = np.stack([r * np.cos(theta), r * np.sin(theta), z], axis=1)
    normals = np.stack([np.cos(theta), np.sin(theta), np.full(n, slope)], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return pts, normals


def _plane_surface(rng, width, height, n):
    """A vertical wall segment, seen from either side."""
    pts = np.stack([np.zeros(n), rng.uniform(-width / 2, width / 2, n), rng.uniform(0, height, n)], 1)
    normals = np.tile([1.0, 0, 0], (n, 1))
    return pts, normals


def _compose(parts):
    pts = np.concatenate([p for p, _ in parts])
    nrm = np.concatenate([n for _, n in parts])
    return pts, nrm


def _shift(part, offset):
    return part[0] + np.asarray(offset), part[1]


def _horizontal_cylinder(rng, radius, width, n):
    """A wheel: cylinder with its axis along y, centred at 0."""
    pts, nrm = _cylinder_surface(rng, radius, width, n)
    pts = pts - [0, 0, width / 2]
    swap = [0, 2, 1]
    return pts[:, swap], nrm[:, swap]


def make_object(rng, label, n=4000):
    """Dense surface samples (points, normals) of one object of class `label`, base at z = 0."""
    name = CLASSES[label]
    if name == "box":
        size = rng.uniform([0.3, 0.3, 0.3], [2.0, 2.0, 1.8])
        pts, nrm = _box_surface(rng, size, n)
        return pts + [0, 0, size[2] / 2], nrm
    if name == "cylinder":
        return _cylinder_surface(rng, rng.uniform(0.1, 0.6), rng.uniform(0.5, 2.5), n)
    if name == "sphere":
        return _sphere_surface(rng, rng.uniform(0.2, 1.0), n)
    if name == "cone":
        return _cone_surface(rng, rng.uniform(0.15, 0.5), rng.uniform(0.4, 1.2), n)
    if name == "plane":
        return _plane_surface(rng, rng.uniform(1.0, 4.0), rng.uniform(1.0, 3.0), n)
    if name == "person":
        h = rng.uniform(1.5, 1.95)
        leg_h, torso_h = 0.47 * h, 0.33 * h
        stride = rng.uniform(0.0, 0.25)
        k = n // 8
        parts = [
            _shift(_cylinder_surface(rng, 0.07, leg_h, k), [stride / 2, -0.1, 0]),
            _shift(_cylinder_surface(rng, 0.07, leg_h, k), [-stride / 2, 0.1, 0]),
            _shift(_box_surface(rng, [0.25, 0.42, torso_h], 3 * k), [0, 0, leg_h + torso_h / 2]),
            _shift(_sphere_surface(rng, 0.11, k), [0, 0, leg_h + torso_h + 0.02]),
            _shift(_cylinder_surface(rng, 0.05, 0.3 * h, k), [0, -0.27, leg_h + torso_h - 0.3 * h]),
            _shift(_cylinder_surface(rng, 0.05, 0.3 * h, k), [0, 0.27, leg_h + torso_h - 0.3 * h]),
        ]
        return _compose(parts)
    # car
    length, width = rng.uniform(3.6, 4.9), rng.uniform(1.6, 1.95)
    body_h, cabin_h = rng.uniform(0.55, 0.8), rng.uniform(0.45, 0.65)
    clearance, wheel_r = 0.2, rng.uniform(0.28, 0.36)
    k = n // 10
    parts = [
        _shift(_box_surface(rng, [length, width, body_h], 5 * k), [0, 0, clearance + body_h / 2]),
        _shift(_box_surface(rng, [length * 0.55, width * 0.9, cabin_h], 3 * k),
               [-length * 0.05, 0, clearance + body_h + cabin_h / 2]),
    ]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_shift(_horizontal_cylinder(rng, wheel_r, 0.22, k // 2),
                                [sx * length * 0.32, sy * (width / 2 - 0.1), wheel_r]))
    return _compose(parts)


def scan_object(rng, label, rings=None, num_points=256):
    """One LiDAR-like view of a random object of class `label`, normalised; None if too sparse."""
    pts, nrm = make_object(rng, label, n=12000)
    yaw = rng.uniform(-np.pi, np.pi)
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    pts, nrm = pts @ rot.T, nrm @ rot.T
    distance = rng.uniform(3.0, 15.0)
    bearing = rng.uniform(-np.pi, np.pi)
    centre = np.array([distance * np.cos(bearing), distance * np.sin(bearing), -SENSOR_HEIGHT_M])
    world = pts + centre
    # Self-occlusion: only surfaces facing the sensor (at the origin) are seen.
    facing = np.einsum("ij,ij->i", nrm, -world) > 0
    if CLASSES[label] == "plane":
        facing[:] = True
    world = world[facing]
    # Scan lines: keep points near the ring elevations.
    if rings is None:
        rings = 16 if rng.uniform() < 0.5 else 32
    lo, hi = (-15.0, 15.0) if rings == 16 else (-30.67, 10.67)
    spacing = (hi - lo) / (rings - 1)
    horizontal = np.linalg.norm(world[:, :2], axis=1)
    elevation = np.degrees(np.arctan2(world[:, 2], horizontal))
    ring_offset = (elevation - lo) / spacing
    near_ring = np.abs(ring_offset - np.round(ring_offset)) < 0.12
    world = world[near_ring & (ring_offset > -0.5) & (ring_offset < rings - 0.5)]
    # Occlusion by something in front: cut away a random azimuth sector of the object.
    if len(world) and rng.uniform() < 0.3:
        az = np.arctan2(world[:, 1], world[:, 0])
        mid = np.median(az)
        lo_cut = mid + rng.uniform(-0.05, 0.05) * 15.0 / distance
        keep = (az < lo_cut) if rng.uniform() < 0.5 else (az > lo_cut)
        if keep.sum() > len(world) * 0.4:
            world = world[keep]
    if len(world) < 24:
        return None
    # Range noise along the ray.
    ranges = np.linalg.norm(world, axis=1, keepdims=True)
    world = world * (1 + rng.normal(0, 0.015, size=(len(world), 1)) / ranges)
    return normalise(rng, world, num_points)


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


def make_split(seed, per_class, num_points=256):
    """`per_class` views of every class; returns (points [M, N, 3] float32, labels [M] int32)."""
    rng = np.random.default_rng(seed)
    clouds, labels = [], []
    for label in range(len(CLASSES)):
        made = 0
        while made < per_class:
            cloud = scan_object(rng, label, num_points=num_points)
            if cloud is None:
                continue
            clouds.append(cloud)
            labels.append(label)
            made += 1
    order = rng.permutation(len(labels))
    return np.stack(clouds)[order], np.array(labels, dtype=np.int32)[order]


def load_modelnet40(root, num_points=256, seed=0):
    """ModelNet40 as distributed (ModelNet40/<class>/{train,test}/*.off meshes): points sampled
    on the faces by area, normalised like the synthetic set. Returns train, test, class names."""
    import pathlib

    rng = np.random.default_rng(seed)
    root = pathlib.Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise SystemExit(f"{root}: no class folders; expected ModelNet40/<class>/train/*.off")
    splits = {}
    for split in ("train", "test"):
        clouds, labels = [], []
        for label, name in enumerate(classes):
            for path in sorted((root / name / split).glob("*.off")):
                clouds.append(normalise(rng, _sample_off(path, rng, 2048), num_points))
                labels.append(label)
        splits[split] = (np.stack(clouds), np.array(labels, dtype=np.int32))
    return splits["train"], splits["test"], classes


def _sample_off(path, rng, n):
    words = path.read_text().split()
    # Some ModelNet files glue the counts to the header: "OFF490 518 0".
    if words[0] == "OFF":
        words = words[1:]
    else:
        words[0] = words[0][3:]
    nv, nf = int(words[0]), int(words[1])
    v = np.array(words[3:3 + 3 * nv], dtype=np.float64).reshape(nv, 3)
    f_words = np.array(words[3 + 3 * nv:], dtype=np.int64)
    faces, at = [], 0
    for _ in range(nf):
        k = f_words[at]
        poly = f_words[at + 1:at + 1 + k]
        faces.extend([(poly[0], poly[i], poly[i + 1]) for i in range(1, k - 1)])
        at += 1 + k
    tri = v[np.array(faces)]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    pick = rng.choice(len(tri), size=n, p=area / area.sum())
    u, w = rng.uniform(size=(2, n, 1))
    flip = (u + w) > 1
    u, w = np.where(flip, 1 - u, u), np.where(flip, 1 - w, w)
    t = tri[pick]
    return t[:, 0] + u * (t[:, 1] - t[:, 0]) + w * (t[:, 2] - t[:, 0])


if __name__ == "__main__":
    import time

    start = time.time()
    x, y = make_split(0, 50)
    print(x.shape, np.bincount(y), f"{time.time() - start:.1f}s")
