//! A mask's outline: the largest 8-connected component (labelled run by run), its boundary
//! traced clockwise, Douglas-Peucker simplification within a point budget, and the inverse,
//! a polygon filled back into pixels.

use super::Mask;

/// The pixels of one 8-connected component, as horizontal runs per row.
struct Component {
    /// Runs `(x0, x1)` (x1 exclusive) of each row, sorted by x0.
    rows: Vec<Vec<(u32, u32)>>,
    /// Its first pixel in raster order.
    first: (usize, usize),
}

impl Component {
    fn contains(&self, x: i64, y: i64) -> bool {
        if x < 0 || y < 0 || y as usize >= self.rows.len() {
            return false;
        }
        let row = &self.rows[y as usize];
        let x = x as u32;
        // The last run starting at or before x.
        let i = row.partition_point(|r| r.0 <= x);
        i > 0 && x < row[i - 1].1
    }
}

/// The largest 8-connected component (ties: the first in raster order), labelled run by run
/// with union-find: the work grows with the number of runs, not pixels, so a 1080p mask
/// costs one pass to find its runs.
fn largest_component(mask: &Mask) -> Option<Component> {
    let (w, h) = (mask.width, mask.height);
    let mut runs: Vec<(u32, u32, u32)> = Vec::new(); // (y, x0, x1)
    let mut row_start = Vec::with_capacity(h + 1);
    for y in 0..h {
        row_start.push(runs.len());
        let row = &mask.pixels[y * w..(y + 1) * w];
        let mut x = 0;
        while x < w {
            if !row[x] {
                x += 1;
                continue;
            }
            let x0 = x;
            while x < w && row[x] {
                x += 1;
            }
            runs.push((y as u32, x0 as u32, x as u32));
        }
    }
    row_start.push(runs.len());
    if runs.is_empty() {
        return None;
    }
    let mut parent: Vec<usize> = (0..runs.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for y in 1..h {
        let (prev, cur) = (
            row_start[y - 1]..row_start[y],
            row_start[y]..row_start[y + 1],
        );
        let mut p = prev.start;
        for c in cur {
            let (_, cx0, cx1) = runs[c];
            // Skip runs of the row above that end before this one can touch (diagonally).
            while p < prev.end && runs[p].2 < cx0 {
                p += 1;
            }
            let mut q = p;
            while q < prev.end && runs[q].1 <= cx1 {
                let (a, b) = (find(&mut parent, q), find(&mut parent, c));
                if a != b {
                    // The smaller index stays the root: the root is the first run in raster order.
                    parent[a.max(b)] = a.min(b);
                }
                q += 1;
            }
        }
    }
    let mut area = vec![0usize; runs.len()];
    for (i, &(_, x0, x1)) in runs.iter().enumerate() {
        let r = find(&mut parent, i);
        area[r] += (x1 - x0) as usize;
    }
    // Largest area; among equals the earliest root, which starts earliest in raster order.
    let best = (0..runs.len()).filter(|&i| parent[i] == i).fold(
        None,
        |acc: Option<usize>, i| match acc {
            Some(b) if area[b] >= area[i] => Some(b),
            _ => Some(i),
        },
    )?;
    let mut rows = vec![Vec::new(); h];
    for (i, &(y, x0, x1)) in runs.iter().enumerate() {
        if find(&mut parent, i) == best {
            rows[y as usize].push((x0, x1));
        }
    }
    Some(Component {
        rows,
        first: (runs[best].1 as usize, runs[best].0 as usize),
    })
}

/// The outer boundary of the largest 8-connected component, as pixel corners traced
/// clockwise (Moore-neighbour tracing on pixel centres); empty for an empty mask.
pub fn largest_contour(mask: &Mask) -> Vec<[i32; 2]> {
    let (w, h) = (mask.width, mask.height);
    let Some(component) = largest_component(mask) else {
        return Vec::new();
    };
    let best_start = component.first;
    let inside = |x: i64, y: i64| component.contains(x, y);
    // Moore tracing, clockwise in image coordinates (y down), from the first pixel in raster
    // order, whose west neighbour is outside.
    const DIRS: [(i64, i64); 8] = [
        (-1, 0),
        (-1, -1),
        (0, -1),
        (1, -1),
        (1, 0),
        (1, 1),
        (0, 1),
        (-1, 1),
    ];
    let start = (best_start.0 as i64, best_start.1 as i64);
    let mut contour = vec![[start.0 as i32, start.1 as i32]];
    let (mut cur, mut from_dir) = (start, 0usize); // came looking from the west
    let limit = 4 * w * h + 8;
    for _ in 0..limit {
        let mut found = None;
        for k in 0..8 {
            let d = (from_dir + k) % 8;
            let (nx, ny) = (cur.0 + DIRS[d].0, cur.1 + DIRS[d].1);
            if inside(nx, ny) {
                found = Some((d, (nx, ny)));
                break;
            }
        }
        let Some((d, nxt)) = found else {
            break; // an isolated pixel
        };
        if nxt == start && contour.len() > 1 {
            break;
        }
        contour.push([nxt.0 as i32, nxt.1 as i32]);
        cur = nxt;
        // Continue the search from the neighbour after the backtrack direction.
        from_dir = (d + 6) % 8;
    }
    contour
}

/// Douglas-Peucker on a closed polygon with tolerance `epsilon` pixels.
pub fn simplify_polygon(points: &[[i32; 2]], epsilon: f32) -> Vec<[i32; 2]> {
    if points.len() <= 3 {
        return points.to_vec();
    }
    // Split the ring at the point farthest from the first, simplify both halves as polylines.
    let far = (1..points.len())
        .max_by_key(|&i| {
            let (dx, dy) = (points[i][0] - points[0][0], points[i][1] - points[0][1]);
            dx as i64 * dx as i64 + dy as i64 * dy as i64
        })
        .unwrap_or(0);
    let mut keep = vec![false; points.len()];
    keep[0] = true;
    keep[far] = true;
    let mut ring: Vec<[i32; 2]> = points.to_vec();
    ring.push(points[0]);
    let mut keep_ring = keep.clone();
    keep_ring.push(true);
    douglas_peucker(&ring, 0, far, epsilon, &mut keep_ring);
    douglas_peucker(&ring, far, ring.len() - 1, epsilon, &mut keep_ring);
    points
        .iter()
        .zip(&keep_ring)
        .filter(|(_, &k)| k)
        .map(|(p, _)| *p)
        .collect()
}

fn douglas_peucker(p: &[[i32; 2]], a: usize, b: usize, epsilon: f32, keep: &mut [bool]) {
    if b <= a + 1 {
        return;
    }
    let (ax, ay) = (p[a][0] as f32, p[a][1] as f32);
    let (bx, by) = (p[b][0] as f32, p[b][1] as f32);
    let (dx, dy) = (bx - ax, by - ay);
    let len = (dx * dx + dy * dy).sqrt();
    let (mut worst, mut worst_d) = (a, -1.0f32);
    for (i, q) in p.iter().enumerate().take(b).skip(a + 1) {
        let (qx, qy) = (q[0] as f32 - ax, q[1] as f32 - ay);
        let d = if len == 0.0 {
            (qx * qx + qy * qy).sqrt()
        } else {
            (qx * dy - qy * dx).abs() / len
        };
        if d > worst_d {
            (worst, worst_d) = (i, d);
        }
    }
    if worst_d > epsilon {
        keep[worst] = true;
        douglas_peucker(p, a, worst, epsilon, keep);
        douglas_peucker(p, worst, b, epsilon, keep);
    }
}

/// The largest component's outline with at most `max_points` points: Douglas-Peucker with a
/// tolerance doubled from 0.5 px until the budget holds.
pub fn polygon_within(mask: &Mask, max_points: usize) -> Vec<[i32; 2]> {
    simplify_within(&largest_contour(mask), max_points, 0.5).0
}

/// Douglas-Peucker on `contour` with a tolerance doubled from `epsilon` until at most
/// `max_points` remain; returns the polygon and the tolerance that made it.
pub(super) fn simplify_within(
    contour: &[[i32; 2]],
    max_points: usize,
    epsilon: f32,
) -> (Vec<[i32; 2]>, f32) {
    let mut epsilon = epsilon;
    let mut poly = simplify_polygon(contour, epsilon);
    while poly.len() > max_points.max(3) && epsilon < 1e6 {
        epsilon *= 2.0;
        poly = simplify_polygon(contour, epsilon);
    }
    (poly, epsilon)
}

/// Fills a polygon (even-odd rule on pixel centres) into a mask: the inverse used by tests
/// and by receivers that want pixels back.
pub fn rasterise_polygon(points: &[[i32; 2]], width: usize, height: usize) -> Mask {
    let mut pixels = vec![false; width * height];
    let n = points.len();
    for y in 0..height {
        let cy = y as f32;
        let mut xs: Vec<f32> = Vec::new();
        for i in 0..n {
            let (a, b) = (points[i], points[(i + 1) % n]);
            let (ay, by) = (a[1] as f32, b[1] as f32);
            if (ay <= cy && by > cy) || (by <= cy && ay > cy) {
                let t = (cy - ay) / (by - ay);
                xs.push(a[0] as f32 + t * (b[0] - a[0]) as f32);
            }
        }
        xs.sort_by(f32::total_cmp);
        for pair in xs.chunks(2) {
            if let [x0, x1] = pair {
                let start = x0.ceil().max(0.0) as usize;
                let end = (x1.floor().max(-1.0) as i64).min(width as i64 - 1);
                for x in start as i64..=end {
                    pixels[y * width + x as usize] = true;
                }
            }
        }
    }
    // Boundary pixels themselves are inside (the contour runs through pixel centres).
    for p in points {
        if p[0] >= 0 && p[1] >= 0 && (p[0] as usize) < width && (p[1] as usize) < height {
            pixels[p[1] as usize * width + p[0] as usize] = true;
        }
    }
    Mask {
        width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::mask::tests::disc;

    /// Pixel-by-pixel flood fill: the slow, obvious way to find the largest 8-connected
    /// component (first in raster order among equals), as an oracle for the run-based one.
    fn largest_component_by_flood_fill(mask: &Mask) -> Option<(Vec<bool>, (usize, usize))> {
        let (w, h) = (mask.width, mask.height);
        let mut label = vec![0u32; w * h];
        let (mut best, mut best_area, mut best_start) = (0u32, 0usize, (0, 0));
        let mut next = 0;
        for start in 0..w * h {
            if !mask.pixels[start] || label[start] != 0 {
                continue;
            }
            next += 1;
            let (mut area, mut stack) = (0, vec![start]);
            label[start] = next;
            while let Some(i) = stack.pop() {
                area += 1;
                let (x, y) = ((i % w) as i64, (i / w) as i64);
                for (dx, dy) in (-1..=1).flat_map(|dx| (-1..=1).map(move |dy| (dx, dy))) {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx >= 0 && ny >= 0 && nx < w as i64 && ny < h as i64 {
                        let j = ny as usize * w + nx as usize;
                        if mask.pixels[j] && label[j] == 0 {
                            label[j] = next;
                            stack.push(j);
                        }
                    }
                }
            }
            if area > best_area {
                (best, best_area, best_start) = (next, area, (start % w, start / w));
            }
        }
        (best_area > 0).then(|| (label.iter().map(|&l| l == best).collect(), best_start))
    }

    #[test]
    fn run_labelling_finds_the_same_component_as_a_flood_fill() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut noise = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        for (case, density) in [0.2f32, 0.45, 0.55, 0.7, 0.95]
            .iter()
            .cycle()
            .take(40)
            .enumerate()
        {
            let (w, h) = (7 + case % 23, 5 + (case * 7) % 31);
            let pixels: Vec<bool> = (0..w * h).map(|_| noise() < *density).collect();
            let mask = Mask {
                width: w,
                height: h,
                pixels,
            };
            let want = largest_component_by_flood_fill(&mask);
            let got = largest_component(&mask);
            match (want, got) {
                (None, None) => {}
                (Some((pixels, first)), Some(c)) => {
                    assert_eq!(c.first, first, "case {case}");
                    for y in 0..h {
                        for x in 0..w {
                            assert_eq!(
                                c.contains(x as i64, y as i64),
                                pixels[y * w + x],
                                "case {case} at ({x}, {y})"
                            );
                        }
                    }
                    assert!(
                        !c.contains(-1, 0) && !c.contains(w as i64, 0) && !c.contains(0, h as i64)
                    );
                }
                (want, got) => panic!("case {case}: {:?} vs {:?}", want.is_some(), got.is_some()),
            }
        }
    }

    #[test]
    fn polygon_follows_the_largest_component_only() {
        let mut m = disc(100, 100, 30.0, 30.0, 20.0);
        let small = disc(100, 100, 80.0, 80.0, 5.0);
        for (p, s) in m.pixels.iter_mut().zip(&small.pixels) {
            *p |= *s;
        }
        let poly = polygon_within(&m, 100);
        assert!(poly.iter().all(|p| p[0] < 60 && p[1] < 60));
    }
}
