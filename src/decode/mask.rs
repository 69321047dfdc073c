//! SAM mask post-processing and compact mask encodings: the ResizeLongestSide geometry that
//! maps image pixels into the model's 1024×1024 frame, the upscale of the decoder's 256×256
//! low-res logits back onto the image (bilinear, `align_corners=False`, numerically like
//! SAM's `postprocess_masks`), and binary masks out as COCO RLE or a simplified polygon for
//! the wire's [`InstanceMask`].

use lookout_wire::heapless;
use lookout_wire::{InstanceMask, MaskShape, PixelBox, Score, MAX_MASK_RUNS, MAX_POLYGON_POINTS};

/// Side of SAM's square model input.
pub const SAM_INPUT_SIDE: usize = 1024;
/// Side of the decoder's low-res mask logits.
pub const LOW_RES_SIDE: usize = 256;

/// How an image of `orig_width × orig_height` sits in SAM's 1024 frame: scaled so that its
/// longest side is 1024 (SAM's `ResizeLongestSide.get_preprocess_shape`), at the top-left,
/// padded bottom/right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamGeometry {
    pub orig_width: usize,
    pub orig_height: usize,
    pub input_width: usize,
    pub input_height: usize,
}

impl SamGeometry {
    /// `None` for an empty image.
    pub fn new(orig_width: usize, orig_height: usize) -> Option<SamGeometry> {
        if orig_width == 0 || orig_height == 0 {
            return None;
        }
        // SAM: scale = long / max(h, w); new = int(old * scale + 0.5), computed in f64 (Python).
        let scale = SAM_INPUT_SIDE as f64 / orig_width.max(orig_height) as f64;
        let side = |v: usize| ((v as f64 * scale + 0.5) as usize).clamp(1, SAM_INPUT_SIDE);
        Some(SamGeometry {
            orig_width,
            orig_height,
            input_width: side(orig_width),
            input_height: side(orig_height),
        })
    }

    /// An image point (pixels) in the 1024 frame, like SAM's `apply_coords`.
    pub fn to_input(&self, x: f32, y: f32) -> [f32; 2] {
        [
            (x as f64 * (self.input_width as f64 / self.orig_width as f64)) as f32,
            (y as f64 * (self.input_height as f64 / self.orig_height as f64)) as f32,
        ]
    }
}

/// Source positions and weights of a 1-D bilinear resize with `align_corners=False`, as
/// PyTorch computes them for an explicit output size: `src = (dst + 0.5) * in/out - 0.5`,
/// clamped at 0.
fn bilinear_taps(in_len: usize, out_len: usize) -> Vec<(usize, usize, f32)> {
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|d| {
            let src = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// Bilinear resize of a row-major `in_w × in_h` plane to `out_w × out_h`, keeping only output
/// rows `rows` and columns `cols` (the crop); separable, so a crop costs only what it keeps.
fn resize_crop(
    plane: &[f32],
    (in_w, in_h): (usize, usize),
    (out_w, out_h): (usize, usize),
    (keep_w, keep_h): (usize, usize),
) -> Vec<f32> {
    let xt = &bilinear_taps(in_w, out_w)[..keep_w];
    let yt = &bilinear_taps(in_h, out_h)[..keep_h];
    // Horizontal pass on every input row, then vertical.
    let mut horiz = vec![0f32; in_h * keep_w];
    for y in 0..in_h {
        let row = &plane[y * in_w..(y + 1) * in_w];
        let out = &mut horiz[y * keep_w..(y + 1) * keep_w];
        for (o, &(i0, i1, l)) in out.iter_mut().zip(xt) {
            *o = row[i0] * (1.0 - l) + row[i1] * l;
        }
    }
    let mut out = vec![0f32; keep_h * keep_w];
    for (y, &(j0, j1, l)) in yt.iter().enumerate() {
        let (r0, r1) = (
            &horiz[j0 * keep_w..][..keep_w],
            &horiz[j1 * keep_w..][..keep_w],
        );
        for ((o, a), b) in out[y * keep_w..][..keep_w].iter_mut().zip(r0).zip(r1) {
            *o = a * (1.0 - l) + b * l;
        }
    }
    out
}

/// Bilinear resize (`align_corners=False`) of a row-major plane; exposed for tests against
/// PyTorch's `F.interpolate`.
pub fn resize_bilinear(plane: &[f32], input: (usize, usize), output: (usize, usize)) -> Vec<f32> {
    resize_crop(plane, input, output, output)
}

/// The decoder's 256×256 low-res logits as logits over the original image (row-major,
/// `orig_width × orig_height`): upscale to 1024, crop the valid region, resize to the image —
/// SAM's `postprocess_masks`, without computing the padding the crop throws away.
pub fn upscale_low_res(low_res: &[f32], geometry: &SamGeometry) -> Vec<f32> {
    let cropped = resize_crop(
        low_res,
        (LOW_RES_SIDE, LOW_RES_SIDE),
        (SAM_INPUT_SIDE, SAM_INPUT_SIDE),
        (geometry.input_width, geometry.input_height),
    );
    if (geometry.input_width, geometry.input_height) == (geometry.orig_width, geometry.orig_height)
    {
        return cropped;
    }
    resize_bilinear(
        &cropped,
        (geometry.input_width, geometry.input_height),
        (geometry.orig_width, geometry.orig_height),
    )
}

/// A binary mask over an image, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<bool>,
}

impl Mask {
    /// Logits > 0 are inside (SAM's `mask_threshold`).
    pub fn from_logits(logits: &[f32], width: usize, height: usize) -> Mask {
        Mask {
            width,
            height,
            pixels: logits.iter().map(|&v| v > 0.0).collect(),
        }
    }

    pub fn get(&self, x: usize, y: usize) -> bool {
        self.pixels[y * self.width + x]
    }

    pub fn area(&self) -> usize {
        self.pixels.iter().filter(|&&p| p).count()
    }

    /// Tight box around the set pixels (inclusive-exclusive), `None` when empty.
    pub fn bounding_box(&self) -> Option<PixelBox> {
        let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
        for y in 0..self.height {
            for x in 0..self.width {
                if self.get(x, y) {
                    x1 = x1.min(x);
                    y1 = y1.min(y);
                    x2 = x2.max(x + 1);
                    y2 = y2.max(y + 1);
                }
            }
        }
        (x2 > 0).then(|| PixelBox {
            x1: clamp_u16(x1),
            y1: clamp_u16(y1),
            x2: clamp_u16(x2),
            y2: clamp_u16(y2),
        })
    }

    /// COCO uncompressed RLE (pycocotools' order): column-major runs alternating 0s and 1s,
    /// starting with 0s (length 0 when the first pixel is set).
    pub fn to_rle(&self) -> Vec<u32> {
        rle_of(self, 0, 0, self.width, self.height)
    }

    /// Rebuilds a mask from COCO uncompressed RLE; `None` when the runs do not add up to
    /// `width × height`.
    pub fn from_rle(runs: &[u32], width: usize, height: usize) -> Option<Mask> {
        let total: u64 = runs.iter().map(|&r| r as u64).sum();
        if total != (width * height) as u64 {
            return None;
        }
        let mut pixels = vec![false; width * height];
        let mut i = 0usize;
        for (k, &run) in runs.iter().enumerate() {
            for _ in 0..run {
                if k % 2 == 1 {
                    let (x, y) = (i / height, i % height);
                    pixels[y * width + x] = true;
                }
                i += 1;
            }
        }
        Some(Mask {
            width,
            height,
            pixels,
        })
    }

    /// Intersection over union with another mask of the same size.
    pub fn iou(&self, other: &Mask) -> f32 {
        let (mut inter, mut union) = (0usize, 0usize);
        for (a, b) in self.pixels.iter().zip(&other.pixels) {
            inter += (*a && *b) as usize;
            union += (*a || *b) as usize;
        }
        if union == 0 {
            0.0
        } else {
            inter as f32 / union as f32
        }
    }
}

fn clamp_u16(v: usize) -> u16 {
    v.min(u16::MAX as usize) as u16
}

/// Column-major RLE of the window `(x0, y0, w, h)` of `mask`.
fn rle_of(mask: &Mask, x0: usize, y0: usize, w: usize, h: usize) -> Vec<u32> {
    let mut runs = Vec::new();
    let (mut current, mut run) = (false, 0u32);
    for x in x0..x0 + w {
        for y in y0..y0 + h {
            let p = mask.get(x, y);
            if p != current {
                runs.push(run);
                current = p;
                run = 0;
            }
            run += 1;
        }
    }
    runs.push(run);
    runs
}

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
fn simplify_within(contour: &[[i32; 2]], max_points: usize, epsilon: f32) -> (Vec<[i32; 2]>, f32) {
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

/// How a mask should travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskEncoding {
    /// Exact RLE over the mask's box when it fits the run budget, else a polygon.
    Auto,
    Rle,
    Polygon,
}

/// Why a mask could not be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskWireError {
    #[error("the mask is empty: nothing to send")]
    Empty,
    #[error("the mask needs {runs} RLE runs, more than the wire's {max}; send it as a polygon")]
    TooManyRuns { runs: usize, max: usize },
    #[error("the mask's box is wider or taller than 65535 px")]
    TooLarge,
}

/// Builds the wire's [`InstanceMask`]: RLE over the tight box (exact) or the largest
/// component's outline within `max_polygon_points` (lossy, a fraction of the bytes).
pub fn to_instance_mask(
    mask: &Mask,
    object_id: u32,
    class_id: u16,
    score: f32,
    encoding: MaskEncoding,
    max_polygon_points: usize,
) -> Result<InstanceMask, MaskWireError> {
    let bbox = mask.bounding_box().ok_or(MaskWireError::Empty)?;
    let (bw, bh) = ((bbox.x2 - bbox.x1) as usize, (bbox.y2 - bbox.y1) as usize);
    let rle = || rle_of(mask, bbox.x1 as usize, bbox.y1 as usize, bw, bh);
    let polygon = || {
        polygon_shape(&polygon_within(
            mask,
            max_polygon_points.min(MAX_POLYGON_POINTS),
        ))
    };
    let rle_shape = |runs: Vec<u32>| -> Result<MaskShape, MaskWireError> {
        let n = runs.len();
        let runs = heapless::Vec::from_slice(&runs).map_err(|_| MaskWireError::TooManyRuns {
            runs: n,
            max: MAX_MASK_RUNS,
        })?;
        Ok(MaskShape::Rle {
            width: bw as u16,
            height: bh as u16,
            runs,
        })
    };
    let shape = match encoding {
        MaskEncoding::Rle => rle_shape(rle())?,
        MaskEncoding::Polygon => polygon()?,
        MaskEncoding::Auto => {
            let runs = rle();
            if runs.len() <= MAX_MASK_RUNS {
                rle_shape(runs)?
            } else {
                polygon()?
            }
        }
    };
    Ok(InstanceMask {
        object_id,
        class_id,
        score: Score::from_f32(score),
        bbox,
        shape,
    })
}

fn polygon_shape(polygon: &[[i32; 2]]) -> Result<MaskShape, MaskWireError> {
    let mut points = heapless::Vec::new();
    for p in polygon {
        let pt = [
            i16::try_from(p[0]).map_err(|_| MaskWireError::TooLarge)?,
            i16::try_from(p[1]).map_err(|_| MaskWireError::TooLarge)?,
        ];
        // The budget loop guarantees the length; a full Vec would only mean a bug upstream.
        if points.push(pt).is_err() {
            break;
        }
    }
    Ok(MaskShape::Polygon { points })
}

/// Bytes of the serial frame (COBS + CRC + delimiter) that would carry `mask`, with a
/// worst-case header (largest varints).
pub fn frame_len(mask: &InstanceMask) -> usize {
    use lookout_wire::{encode_frame, Body, Header, Message, MAX_FRAME_LEN, PROTOCOL_VERSION};
    let message = Message {
        header: Header {
            version: PROTOCOL_VERSION,
            device_id: u16::MAX,
            sequence: u32::MAX,
            timestamp_us: u64::MAX,
            frame_id: u32::MAX,
        },
        body: Body::Mask(mask.clone()),
    };
    let mut out = [0u8; MAX_FRAME_LEN + MAX_FRAME_LEN / 128 + 8];
    encode_frame(&message, &mut out).map_or(usize::MAX, |f| f.len())
}

/// The most faithful encoding of `mask` whose serial frame fits `max_frame_bytes`: exact RLE
/// if it fits, else polygons with 256, 128, ... 4 points. `None` when not even a 4-point
/// polygon fits (or the mask is empty).
pub fn fit_instance_mask(
    mask: &Mask,
    object_id: u32,
    class_id: u16,
    score: f32,
    max_frame_bytes: usize,
) -> Option<InstanceMask> {
    let fits = |m: &InstanceMask| frame_len(m) <= max_frame_bytes;
    if let Ok(m) = to_instance_mask(mask, object_id, class_id, score, MaskEncoding::Rle, 0) {
        if fits(&m) {
            return Some(m);
        }
    }
    // The outline is traced once; each smaller budget goes on simplifying from the tolerance
    // the previous one reached.
    let bbox = mask.bounding_box()?;
    let contour = largest_contour(mask);
    let (mut points, mut epsilon) = (MAX_POLYGON_POINTS, 0.5f32);
    while points >= 4 {
        let (polygon, reached) = simplify_within(&contour, points, epsilon);
        epsilon = reached;
        let m = InstanceMask {
            object_id,
            class_id,
            score: Score::from_f32(score),
            bbox,
            shape: polygon_shape(&polygon).ok()?,
        };
        if fits(&m) {
            return Some(m);
        }
        points /= 2;
    }
    None
}

/// Rebuilds the full-image mask a wire [`InstanceMask`] describes.
pub fn from_instance_mask(mask: &InstanceMask, width: usize, height: usize) -> Option<Mask> {
    match &mask.shape {
        MaskShape::Rle {
            width: bw,
            height: bh,
            runs,
        } => {
            let local = Mask::from_rle(runs, *bw as usize, *bh as usize)?;
            let mut full = Mask {
                width,
                height,
                pixels: vec![false; width * height],
            };
            for y in 0..local.height {
                for x in 0..local.width {
                    let (gx, gy) = (x + mask.bbox.x1 as usize, y + mask.bbox.y1 as usize);
                    if local.get(x, y) && gx < width && gy < height {
                        full.pixels[gy * width + gx] = true;
                    }
                }
            }
            Some(full)
        }
        MaskShape::Polygon { points } => {
            let pts: Vec<[i32; 2]> = points.iter().map(|p| [p[0] as i32, p[1] as i32]).collect();
            Some(rasterise_polygon(&pts, width, height))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn disc(w: usize, h: usize, cx: f32, cy: f32, r: f32) -> Mask {
        let pixels = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 - cx, (i / w) as f32 - cy);
                x * x + y * y <= r * r
            })
            .collect();
        Mask {
            width: w,
            height: h,
            pixels,
        }
    }

    #[test]
    fn geometry_matches_sam_resize_longest_side() {
        // Values from SAM's ResizeLongestSide.get_preprocess_shape.
        let g = SamGeometry::new(451, 300).unwrap();
        assert_eq!((g.input_width, g.input_height), (1024, 681));
        let g = SamGeometry::new(300, 451).unwrap();
        assert_eq!((g.input_width, g.input_height), (681, 1024));
        let g = SamGeometry::new(640, 480).unwrap();
        assert_eq!((g.input_width, g.input_height), (1024, 768));
        let p = SamGeometry::new(640, 480).unwrap().to_input(320.0, 240.0);
        assert_eq!(p, [512.0, 384.0]);
        assert!(SamGeometry::new(0, 5).is_none());
    }

    #[test]
    fn rle_is_column_major_and_starts_with_zeros() {
        // 3x2 mask:  . X .
        //            X X .
        let m = Mask {
            width: 3,
            height: 2,
            pixels: vec![false, true, false, true, true, false],
        };
        // Column-major: (0,0)=0 (0,1)=1 (1,0)=1 (1,1)=1 (2,0)=0 (2,1)=0
        assert_eq!(m.to_rle(), vec![1, 3, 2]);
        let first_set = Mask {
            width: 1,
            height: 2,
            pixels: vec![true, false],
        };
        assert_eq!(first_set.to_rle(), vec![0, 1, 1]);
    }

    #[test]
    fn rle_round_trips_a_disc_and_rejects_wrong_totals() {
        let m = disc(40, 30, 17.0, 12.0, 9.5);
        let back = Mask::from_rle(&m.to_rle(), 40, 30).unwrap();
        assert_eq!(back, m);
        assert!(Mask::from_rle(&[5, 5], 40, 30).is_none());
    }

    #[test]
    fn wire_rle_covers_exactly_the_mask() {
        let m = disc(64, 48, 30.0, 20.0, 10.0);
        let wire = to_instance_mask(&m, 7, 0, 0.9, MaskEncoding::Rle, 64).unwrap();
        assert!(matches!(wire.shape, MaskShape::Rle { .. }));
        assert_eq!(from_instance_mask(&wire, 64, 48).unwrap(), m);
        let b = wire.bbox;
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (20, 10, 41, 31));
    }

    #[test]
    fn polygon_round_trip_keeps_the_shape_within_its_budget() {
        let m = disc(200, 150, 90.0, 70.0, 50.0);
        for budget in [8usize, 16, 64] {
            let wire = to_instance_mask(&m, 1, 0, 0.5, MaskEncoding::Polygon, budget).unwrap();
            let MaskShape::Polygon { points } = &wire.shape else {
                panic!("expected a polygon");
            };
            assert!(
                points.len() <= budget && points.len() >= 4,
                "{}",
                points.len()
            );
            let back = from_instance_mask(&wire, 200, 150).unwrap();
            let iou = back.iou(&m);
            assert!(
                iou > if budget == 8 { 0.85 } else { 0.95 },
                "budget {budget}: iou {iou}"
            );
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

    #[test]
    fn auto_encoding_falls_back_to_a_polygon_when_runs_overflow() {
        // A checkerboard needs one run per pixel.
        let pixels = (0..64 * 64).map(|i| (i % 64 + i / 64) % 2 == 0).collect();
        let m = Mask {
            width: 64,
            height: 64,
            pixels,
        };
        let wire = to_instance_mask(&m, 0, 0, 1.0, MaskEncoding::Auto, 32).unwrap();
        assert!(matches!(wire.shape, MaskShape::Polygon { .. }));
        assert!(matches!(
            to_instance_mask(&m, 0, 0, 1.0, MaskEncoding::Rle, 32),
            Err(MaskWireError::TooManyRuns { .. })
        ));
    }

    #[test]
    fn masks_fit_the_frame_budget_exactly_when_they_can() {
        let m = disc(200, 150, 90.0, 70.0, 50.0);
        let exact = fit_instance_mask(&m, 1, 2, 0.9, lookout_wire::MAX_FRAME_LEN).unwrap();
        assert!(matches!(exact.shape, MaskShape::Rle { .. }));
        assert_eq!(from_instance_mask(&exact, 200, 150).unwrap(), m);
        // A tighter budget: the RLE (~100 runs) does not fit, a polygon does.
        let small = fit_instance_mask(&m, 1, 2, 0.9, 120).unwrap();
        assert!(matches!(small.shape, MaskShape::Polygon { .. }));
        assert!(frame_len(&small) <= 120);
        assert!(from_instance_mask(&small, 200, 150).unwrap().iou(&m) > 0.85);
        assert!(fit_instance_mask(&m, 1, 2, 0.9, 10).is_none());
    }

    #[test]
    fn empty_mask_is_an_error_not_a_panic() {
        let m = Mask {
            width: 4,
            height: 4,
            pixels: vec![false; 16],
        };
        assert_eq!(
            to_instance_mask(&m, 0, 0, 1.0, MaskEncoding::Auto, 8),
            Err(MaskWireError::Empty)
        );
        assert!(largest_contour(&m).is_empty());
    }

    #[test]
    fn bilinear_resize_matches_torch_interpolate() {
        // torch.nn.functional.interpolate(torch.arange(12.).reshape(1,1,3,4), size=(5,3),
        //   mode="bilinear", align_corners=False)
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let out = resize_bilinear(&src, (4, 3), (3, 5));
        #[rustfmt::skip]
        let expected = [
            0.1667, 1.5000, 2.8333,
            1.7667, 3.1000, 4.4333,
            4.1667, 5.5000, 6.8333,
            6.5667, 7.9000, 9.2333,
            8.1667, 9.5000, 10.8333,
        ];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-4, "{out:?}");
        }
    }
}
