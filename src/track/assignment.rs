//! Optimal assignment of rows to columns (tracks to detections) at least total cost: the
//! Hungarian method in its shortest-augmenting-path form with potentials (Jonker–Volgenant
//! style), O(n²·m) for n ≤ m, and on top of it the gated form the tracker needs (only some
//! pairs allowed; most pairs first, then least cost), solved per connected component. Written
//! here because it is short and the crates that have it bring integer-only costs or a graph
//! library with them.

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

/// Among the allowed pairs `edges` (`(row, col, cost)`), a matching — no row or column used
/// twice — with the most pairs and, among those, the least total cost; returns each row's
/// column. Pairs not listed are not allowed; edges out of range or with a non-finite cost are
/// ignored, and a pair listed twice keeps its lower cost.
///
/// Rows and columns joined by no chain of edges cannot affect each other's pairing, so each
/// connected component is solved on its own: a scene of scattered objects is many 1×1 or 2×2
/// problems instead of one large dense one.
pub fn max_matching_min_cost(
    rows: usize,
    cols: usize,
    edges: &[(usize, usize, f64)],
) -> Vec<Option<usize>> {
    let mut by_row = vec![None; rows];
    let valid: Vec<&(usize, usize, f64)> = edges
        .iter()
        .filter(|(r, c, cost)| *r < rows && *c < cols && cost.is_finite())
        .collect();
    // Union-find over rows (0..rows) and columns (rows..rows + cols).
    let mut parent: Vec<usize> = (0..rows + cols).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for &&(r, c, _) in &valid {
        let (a, b) = (root(&mut parent, r), root(&mut parent, rows + c));
        if a != b {
            parent[a] = b;
        }
    }
    let mut grouped: Vec<(usize, usize, usize, f64)> = valid
        .iter()
        .map(|&&(r, c, cost)| (root(&mut parent, r), r, c, cost))
        .collect();
    grouped.sort_by_key(|&(g, r, c, _)| (g, r, c));
    for component in grouped.chunk_by(|a, b| a.0 == b.0) {
        if let [(_, r, c, _)] = component {
            by_row[*r] = Some(*c);
            continue;
        }
        let mut local_rows: Vec<usize> = component.iter().map(|e| e.1).collect();
        let mut local_cols: Vec<usize> = component.iter().map(|e| e.2).collect();
        local_rows.dedup(); // sorted by row already
        local_cols.sort_unstable();
        local_cols.dedup();
        let (nr, nc) = (local_rows.len(), local_cols.len());
        let max_abs = component.iter().fold(0.0f64, |m, e| m.max(e.3.abs()));
        // Costlier than any difference the allowed pairs can make, so the solver first
        // minimises the number of disallowed pairs it is forced to take.
        let forbidden = 2.0 * (nr.min(nc) as f64 + 1.0) * (max_abs + 1.0);
        let mut costs = vec![forbidden; nr * nc];
        let mut allowed = vec![false; nr * nc];
        for &(_, r, c, cost) in component {
            let (i, j) = (
                local_rows.binary_search(&r).unwrap_or_default(),
                local_cols.binary_search(&c).unwrap_or_default(),
            );
            let k = i * nc + j;
            costs[k] = if allowed[k] { costs[k].min(cost) } else { cost };
            allowed[k] = true;
        }
        for (i, j) in min_cost_assignment(&costs, nr, nc).iter().enumerate() {
            if let Some(j) = j.filter(|j| allowed[i * nc + j]) {
                by_row[local_rows[i]] = Some(local_cols[j]);
            }
        }
    }
    by_row
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

    /// (pairs, least cost) of the best matching over `allowed` (NaN = not allowed), by
    /// trying every one.
    fn brute_force_matching(costs: &[f64], rows: usize, cols: usize) -> (usize, f64) {
        fn go(
            costs: &[f64],
            cols: usize,
            row: usize,
            rows: usize,
            used: &mut [bool],
        ) -> (usize, f64) {
            if row == rows {
                return (0, 0.0);
            }
            let mut best = go(costs, cols, row + 1, rows, used);
            for c in 0..cols {
                let cost = costs[row * cols + c];
                if used[c] || cost.is_nan() {
                    continue;
                }
                used[c] = true;
                let (n, total) = go(costs, cols, row + 1, rows, used);
                used[c] = false;
                let candidate = (n + 1, total + cost);
                if candidate.0 > best.0 || (candidate.0 == best.0 && candidate.1 < best.1) {
                    best = candidate;
                }
            }
            best
        }
        go(costs, cols, 0, rows, &mut vec![false; cols])
    }

    #[test]
    fn matching_pairs_only_allowed_edges_and_prefers_more_pairs() {
        // Row 0 could take column 0 cheaply, but then row 1 (allowed only column 0) would
        // go without: two dearer pairs beat one cheap pair.
        let edges = [(0, 0, 0.1), (0, 1, 0.9), (1, 0, 0.8)];
        assert_eq!(max_matching_min_cost(2, 2, &edges), vec![Some(1), Some(0)]);
        // Separate components, a duplicate edge (lower cost wins) and junk edges.
        let edges = [
            (0, 0, 0.5),
            (2, 3, 0.2),
            (2, 3, 0.1),
            (1, 9, 0.0),
            (1, 1, f64::NAN),
        ];
        assert_eq!(
            max_matching_min_cost(3, 4, &edges),
            vec![Some(0), None, Some(3)]
        );
    }

    fn sparse_matrix() -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
        (1usize..=6, 1usize..=6).prop_flat_map(|(r, c)| {
            (
                Just(r),
                Just(c),
                prop::collection::vec(
                    prop_oneof![2 => Just(f64::NAN), 3 => 0.0f64..1.0, 1 => Just(0.5)],
                    r * c,
                ),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn sparse_matching_matches_brute_force((rows, cols, costs) in sparse_matrix()) {
            let edges: Vec<(usize, usize, f64)> = (0..rows * cols)
                .filter(|k| !costs[*k].is_nan())
                .map(|k| (k / cols, k % cols, costs[k]))
                .collect();
            let m = max_matching_min_cost(rows, cols, &edges);
            let mut used = vec![false; cols];
            let mut total = 0.0;
            for (r, c) in m.iter().enumerate() {
                if let Some(c) = c {
                    prop_assert!(!used[*c]);
                    used[*c] = true;
                    prop_assert!(!costs[r * cols + c].is_nan(), "took a pair not allowed");
                    total += costs[r * cols + c];
                }
            }
            let (best_n, best_cost) = brute_force_matching(&costs, rows, cols);
            prop_assert_eq!(m.iter().flatten().count(), best_n);
            prop_assert!((total - best_cost).abs() < 1e-9, "{total} vs {best_cost}");
        }
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
