"""Agreement of `lookout lidar` with the hand labels of the real captures' objects.

    python3 quantize/pointnet/real_agreement.py [--lookout target/release/lookout] [--model NAME|PATH]

Runs lookout on each capture labelled in lidar/tests/fixtures/real_labels.json (the first
complete rotation; the HDL-32E capture's partial turn, as labelled), finds each labelled
object among lookout's by its box centre, and prints a Markdown table: per hand label, how
many objects and how many lookout called the same ('other' = none of the trained classes,
right when lookout says `unknown`). Needs only the standard library.
"""

import argparse
import collections
import json
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lookout", default=str(ROOT / "target/release/lookout"))
    p.add_argument("--model", help="a manifest name or an .onnx path (default: lookout's)")
    p.add_argument("--precision", default="fp32")
    args = p.parse_args()
    labels = json.loads((ROOT / "lidar/tests/fixtures/real_labels.json").read_text())["captures"]
    totals = collections.defaultdict(lambda: [0, 0])
    per_capture = {}
    confusion = collections.Counter()
    for capture, objects in labels.items():
        command = [args.lookout, "lidar", "--threads", "1", "--partial", "--precision", args.precision,
                   "--pcap", str(ROOT / "lidar/tests/fixtures" / capture)]
        if args.model:
            command += ["--model", args.model]
        lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
        scans = [json.loads(line) for line in lines]
        # The labelled rotation: the first complete one, or the only one there is.
        scan = next((s for s in scans if s["scan"]["complete"]), max(scans, key=lambda s: s["scan"]["points"]))
        right = 0
        for o in objects:
            found = [x for x in scan["objects"]
                     if max(abs(a - b) for a, b in zip(x["center_m"], o["center_m"])) < 0.01]
            if len(found) != 1:
                raise SystemExit(f"{capture}: labelled object at {o['center_m']} not found once in lookout's output")
            said = found[0]["class"]
            want = "unknown" if o["label"] == "other" else o["label"]
            ok = said == want
            right += ok
            totals[o["label"]][0] += 1
            totals[o["label"]][1] += ok
            confusion[(o["label"], said)] += 1
        per_capture[capture] = (len(objects), right)
    print("| hand label | objects | lookout agrees |")
    print("|---|---|---|")
    for label, (n, ok) in sorted(totals.items()):
        print(f"| {label} | {n} | {ok} ({ok / n:.0%}) |")
    n = sum(v[0] for v in totals.values())
    ok = sum(v[1] for v in totals.values())
    print(f"| **all** | {n} | **{ok} ({ok / n:.0%})** |")
    print()
    for capture, (n, ok) in per_capture.items():
        print(f"- {capture}: {ok} of {n}")
    print("- what lookout said, per hand label: " + "; ".join(
        f"{label}: " + ", ".join(f"{said} {k}" for (l2, said), k in sorted(confusion.items()) if l2 == label)
        for label in sorted(totals)))


if __name__ == "__main__":
    main()
