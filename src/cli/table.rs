//! Plain-text tables whose columns are as wide as their longest value
//! (heading included), so a long status (`interrupted`), a long set name
//! or a large count never pushes a row out of line. The last column is
//! left unpadded (a path, a manifest key: free text at the end of a line).

use crate::cli::output::{OutputError, outln};

/// How a column's values sit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    /// Text: padded on the right.
    Left,
    /// Numbers: padded on the left.
    Right,
}

/// One column: the text before it (the gap from the previous column), its
/// heading and its alignment.
pub(crate) type Column = (&'static str, &'static str, Align);

/// A table filled row by row and printed at once.
pub(crate) struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub(crate) fn new(columns: &[Column]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row: one value per column.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints the heading and the rows, each column as wide as its
    /// longest value (counted in characters).
    pub(crate) fn print(&self) -> Result<(), OutputError> {
        let heads: Vec<String> = self.columns.iter().map(|c| c.1.to_string()).collect();
        let mut widths: Vec<usize> = heads.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&heads).chain(&self.rows) {
            outln!("{}", self.line(row, &widths))?;
        }
        Ok(())
    }

    /// One line of the table.
    fn line(&self, row: &[String], widths: &[usize]) -> String {
        let last = self.columns.len().saturating_sub(1);
        let mut line = String::new();
        for (i, ((gap, _, align), cell)) in self.columns.iter().zip(row).enumerate() {
            line.push_str(gap);
            let pad = " ".repeat(widths[i].saturating_sub(cell.chars().count()));
            match align {
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
                Align::Left if i == last => line.push_str(cell),
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_longest_value() {
        let mut t = Table::new(&[
            ("", "ID", Align::Right),
            ("  ", "status", Align::Left),
            (" ", "n", Align::Right),
            ("  ", "path", Align::Left),
        ]);
        t.row(vec!["1".into(), "ok".into(), "10".into(), "a".into()]);
        t.row(vec!["12".into(), "interrupted".into(), "3".into(), "b c".into()]);
        let heads: Vec<String> = t.columns.iter().map(|c| c.1.to_string()).collect();
        let widths = [2, 11, 2, 4];
        assert_eq!(t.line(&heads, &widths), "ID  status       n  path");
        assert_eq!(t.line(&t.rows[0], &widths), " 1  ok          10  a");
        assert_eq!(t.line(&t.rows[1], &widths), "12  interrupted  3  b c");
    }
}
