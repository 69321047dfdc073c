//! Optimal assignment of rows to columns (tracks to detections) at least total cost: the
//! Hungarian method in its shortest-augmenting-path form with potentials (Jonker–Volgenant
//! style), O(n²·m) for n ≤ m. Written here because it is forty lines and the crates that have
//! it bring integer-only costs or a graph library with them.

/// For a `rows × cols` cost matrix in row-major order, the column given to each row (`None`
/// for rows left over when there are more rows than columns), minimising the summed cost of
/// `min(rows, cols)` pairs. Non-finite costs are treated as larger than any finite one.
///
/// Returns an empty vector when `costs.len() != rows * cols`.
pub fn min_cost_assignment(costs: &[f64], rows: usize, cols: usize) -> Vec<Option<usize>> {
    if costs.len() != rows * cols {
        log::warn!(
            "assignment: {} costs for a {rows}×{cols} matrix; nothing assigned",
            costs.len()
        );
        return Vec::new();
    }
    if rows == 0 || cols == 0 {
        return vec![None; rows];
    }
    // Non-finite entries become a cost no combination of finite ones can reach.
    let finite_max = costs
        .iter()
        .filter(|c| c.is_finite())
        .fold(0.0f64, |m, c| m.max(c.abs()));
    let ceiling = (finite_max + 1.0) * (rows.max(cols) as f64 + 1.0);
    let cost = |r: usize, c: usize| {
        let v = costs[r * cols + c];
        if v.is_finite() {
            v
        } else {
            ceiling
        }
    };
    if rows <= cols {
        solve(rows, cols, cost)
    } else {
        // Assign each column a row instead, then turn the answer around.
        let by_col = solve(cols, rows, |c, r| cost(r, c));
        let mut by_row = vec![None; rows];
        for (c, r) in by_col.iter().enumerate() {
            if let Some(r) = r {
                by_row[*r] = Some(c);
            }
        }
        by_row
    }
}

/// The n ≤ m case. Index 0 of `col_owner`/`way`/`v` is a virtual column that starts each
/// augmenting path; rows and columns are 1-based inside.
fn solve(n: usize, m: usize, cost: impl Fn(usize, usize) -> f64) -> Vec<Option<usize>> {
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut col_owner = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    let mut min_slack = vec![0.0f64; m + 1];
    let mut used = vec![false; m + 1];
    for row in 1..=n {
        col_owner[0] = row;
        let mut j0 = 0;
        min_slack.fill(f64::INFINITY);
        used.fill(false);
        loop {
            used[j0] = true;
            let i0 = col_owner[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let slack = cost(i0 - 1, j - 1) - u[i0] - v[j];
                if slack < min_slack[j] {
                    min_slack[j] = slack;
                    way[j] = j0;
                }
                if min_slack[j] < delta {
                    delta = min_slack[j];
                    j1 = j;
                }
            }
            if j1 == 0 {
                // Only possible with NaN slack from overflowing costs; stop rather than loop.
                break;
            }
            for j in 0..=m {
                if used[j] {
                    u[col_owner[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_slack[j] -= delta;
                }
            }
            j0 = j1;
            if col_owner[j0] == 0 {
                break;
            }
        }
        // Flip the augmenting path back to its start.
        while j0 != 0 {
            let j1 = way[j0];
            col_owner[j0] = col_owner[j1];
            j0 = j1;
        }
    }
    let mut by_row = vec![None; n];
    for (j, &row) in col_owner.iter().enumerate().skip(1) {
        if row != 0 {
            by_row[row - 1] = Some(j - 1);
        }
    }
    by_row
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn total(costs: &[f64], cols: usize, assignment: &[Option<usize>]) -> f64 {
        assignment
            .iter()
            .enumerate()
            .filter_map(|(r, c)| c.map(|c| costs[r * cols + c]))
            .sum()
    }

    /// Least total over every way of pairing min(rows, cols) rows with distinct columns.
    fn brute_force(costs: &[f64], rows: usize, cols: usize) -> f64 {
        fn go(
            costs: &[f64],
            cols: usize,
            rows_left: &[usize],
            used: &mut Vec<bool>,
            k: usize,
        ) -> f64 {
            if k == 0 {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            // Either this row takes a free column, or (when rows outnumber the pairs still
            // to make) it is left out.
            let (&row, rest) = match rows_left.split_first() {
                Some(x) => x,
                None => return f64::INFINITY,
            };
            for c in 0..cols {
                if !used[c] {
                    used[c] = true;
                    best = best.min(costs[row * cols + c] + go(costs, cols, rest, used, k - 1));
                    used[c] = false;
                }
            }
            if rest.len() >= k {
                best = best.min(go(costs, cols, rest, used, k));
            }
            best
        }
        let rows_left: Vec<usize> = (0..rows).collect();
        go(
            costs,
            cols,
            &rows_left,
            &mut vec![false; cols],
            rows.min(cols),
        )
    }

    fn check_valid(assignment: &[Option<usize>], rows: usize, cols: usize) {
        assert_eq!(assignment.len(), rows);
        let mut seen = vec![false; cols];
        for c in assignment.iter().flatten() {
            assert!(!seen[*c], "column {c} given twice: {assignment:?}");
            seen[*c] = true;
        }
        assert_eq!(
            assignment.iter().flatten().count(),
            rows.min(cols),
            "{assignment:?}"
        );
    }

    #[test]
    fn textbook_matrix_has_known_optimum() {
        // Rows take columns 1, 0, 2: 1 + 2 + 2 = 5, the least of the 6 permutations.
        let costs = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        let a = min_cost_assignment(&costs, 3, 3);
        assert_eq!(a, vec![Some(1), Some(0), Some(2)]);
        assert_eq!(total(&costs, 3, &a), 5.0);
    }

    #[test]
    fn greedy_choice_is_not_taken_when_it_costs_more() {
        // Greedy takes (0,0) at 0.1 and is left with (1,1) at 10; the optimum is 1 + 1.
        let costs = [0.1, 1.0, 1.0, 10.0];
        assert_eq!(min_cost_assignment(&costs, 2, 2), vec![Some(1), Some(0)]);
    }

    #[test]
    fn empty_and_mismatched_inputs_assign_nothing() {
        assert_eq!(min_cost_assignment(&[], 0, 5), Vec::<Option<usize>>::new());
        assert_eq!(min_cost_assignment(&[], 3, 0), vec![None; 3]);
        assert!(min_cost_assignment(&[1.0, 2.0], 2, 2).is_empty());
    }

    #[test]
    fn infinite_costs_are_avoided_when_possible() {
        let inf = f64::INFINITY;
        let costs = [inf, 5.0, 1.0, inf];
        assert_eq!(min_cost_assignment(&costs, 2, 2), vec![Some(1), Some(0)]);
        let costs = [f64::NAN, 1.0];
        assert_eq!(min_cost_assignment(&costs, 1, 2), vec![Some(1)]);
    }

    fn matrix() -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
        (1usize..=6, 1usize..=6).prop_flat_map(|(r, c)| {
            (
                Just(r),
                Just(c),
                prop::collection::vec(
                    prop_oneof![
                        4 => 0.0f64..1.0,
                        // ties and whole numbers, as gated IoU costs have
                        1 => Just(1.0),
                        1 => (0u8..4).prop_map(f64::from),
                    ],
                    r * c,
                ),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn hungarian_matches_brute_force_on_random_matrices((rows, cols, costs) in matrix()) {
            let a = min_cost_assignment(&costs, rows, cols);
            check_valid(&a, rows, cols);
            let best = brute_force(&costs, rows, cols);
            let got = total(&costs, cols, &a);
            prop_assert!((got - best).abs() < 1e-9, "got {got}, best {best}, {a:?}");
        }
    }
}
