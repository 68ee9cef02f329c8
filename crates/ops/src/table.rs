//! The compact tables the commands print for people: a header row and aligned columns, numbers
//! to the right, everything else to the left, two spaces between columns.
//!
//! What goes in the cells is each report's business; `--json` output does not pass here.

/// A table being filled.
#[derive(Clone, Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra ones are dropped.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines of text, each ending in a line break.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|row| row[i].chars().count())
                .chain([self.header[i].chars().count()])
                .max()
                .unwrap_or_default()
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let numeric: Vec<bool> = (0..columns)
            .map(|i| {
                let mut cells = self.rows.iter().map(|row| row[i].as_str());
                !self.rows.is_empty() && cells.all(|cell| cell.is_empty() || is_number(cell))
            })
            .collect();

        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    let pad = " ".repeat(widths[i] - cell.chars().count());
                    if numeric[i] {
                        format!("{pad}{cell}")
                    } else {
                        format!("{cell}{pad}")
                    }
                })
                .collect();
            format!("{}\n", padded.join("  ").trim_end())
        };
        let mut text = line(&self.header);
        for row in &self.rows {
            text.push_str(&line(row));
        }
        text
    }
}

fn is_number(cell: &str) -> bool {
    cell.parse::<f64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_align_right_and_words_left_under_their_titles() {
        let mut table = Table::new(["STREAM", "MESSAGES"]);
        table.row(["BRIDGE_ORDERS_RAW", "7"]);
        table.row(["BRIDGE_DLQ", "1234"]);
        assert_eq!(
            table.render(),
            "STREAM             MESSAGES\n\
             BRIDGE_ORDERS_RAW         7\n\
             BRIDGE_DLQ             1234\n"
        );
    }

    #[test]
    fn wide_characters_count_once_and_short_rows_are_padded() {
        let mut table = Table::new(["ORDER", "REASON", "N"]);
        table.row(["CK1", "客户"]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "CK1    客户");
    }
}
