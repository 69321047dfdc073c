//! Drawing detections onto images for people to look at: a box per object and a label with
//! class name and score, in a colour per class.

use crate::decode::Detection;
use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// Distinct, saturated colours; class `c` uses `PALETTE[c % len]`.
const PALETTE: [[u8; 3]; 10] = [
    [255, 56, 56],
    [255, 157, 151],
    [255, 112, 31],
    [255, 178, 29],
    [207, 210, 49],
    [72, 249, 10],
    [26, 147, 52],
    [0, 212, 187],
    [0, 194, 255],
    [132, 56, 255],
];

fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    for y in y0.max(0)..y1.min(h) {
        for x in x0.max(0)..x1.min(w) {
            img.put_pixel(x as u32, y as u32, colour);
        }
    }
}

fn draw_text(img: &mut RgbImage, x0: i64, y0: i64, text: &str, colour: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let (x, y) = (x0 + i as i64 * 8 + col, y0 + row as i64);
                    fill_rect(img, x, y, x + 1, y + 1, colour);
                }
            }
        }
    }
}

/// Draws each detection's box (lines scale with the image) and a `name score` label.
pub fn draw_detections(img: &mut RgbImage, detections: &[Detection], class_names: &[String]) {
    let thickness = ((img.width().max(img.height()) as f32 / 400.0).round() as i64).max(1);
    for d in detections {
        let colour = Rgb(PALETTE[d.class_id % PALETTE.len()]);
        let (x1, y1) = (d.bbox.x1.round() as i64, d.bbox.y1.round() as i64);
        let (x2, y2) = (d.bbox.x2.round() as i64, d.bbox.y2.round() as i64);
        fill_rect(img, x1, y1, x2, y1 + thickness, colour);
        fill_rect(img, x1, y2 - thickness, x2, y2, colour);
        fill_rect(img, x1, y1, x1 + thickness, y2, colour);
        fill_rect(img, x2 - thickness, y1, x2, y2, colour);

        let name = class_names.get(d.class_id).map_or("?", String::as_str);
        let label = format!("{name} {:.2}", d.score);
        let label_w = label.len() as i64 * 8 + 4;
        // Above the box when there is room, else just inside its top edge.
        let ly = if y1 >= 12 { y1 - 12 } else { y1 };
        let lx = x1.min(img.width() as i64 - label_w).max(0);
        fill_rect(img, lx, ly, lx + label_w, ly + 12, colour);
        // Dark text on light label colours, white on dark ones, so every label stays legible.
        let [r, g, b] = colour.0.map(u32::from);
        let text = if 299 * r + 587 * g + 114 * b > 150_000 {
            [0, 0, 0]
        } else {
            [255, 255, 255]
        };
        draw_text(img, lx + 2, ly + 2, &label, Rgb(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::BoundingBox;

    #[test]
    fn drawing_marks_box_edges_and_leaves_the_inside_alone() {
        let mut img = RgbImage::from_pixel(100, 100, Rgb([0, 0, 0]));
        let d = Detection {
            class_id: 0,
            score: 0.9,
            bbox: BoundingBox {
                x1: 20.,
                y1: 30.,
                x2: 80.,
                y2: 90.,
            },
        };
        draw_detections(&mut img, &[d], &["person".to_string()]);
        assert_eq!(img.get_pixel(50, 30).0, PALETTE[0]);
        assert_eq!(img.get_pixel(20, 60).0, PALETTE[0]);
        assert_eq!(img.get_pixel(50, 60).0, [0, 0, 0]);
        // The label sits above the box.
        let white = (18..30).flat_map(|y| (20..100).map(move |x| (x, y)));
        assert!(white
            .into_iter()
            .any(|(x, y)| img.get_pixel(x, y).0 == [255, 255, 255]));
    }

    #[test]
    fn drawing_boxes_outside_the_image_does_not_panic() {
        let mut img = RgbImage::new(10, 10);
        let d = Detection {
            class_id: 99,
            score: 0.5,
            bbox: BoundingBox {
                x1: -50.,
                y1: -50.,
                x2: 500.,
                y2: 500.,
            },
        };
        draw_detections(&mut img, &[d], &[]);
    }
}
