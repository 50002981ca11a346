//! The filtering policy document as a PDF (F14), laid out from the same
//! Markdown that `sheepdog policy export` writes, so the two cannot say
//! different things.
//!
//! Only the PDF base fonts (Helvetica and its bold and oblique faces) are
//! used: every PDF reader has them, so nothing is embedded and no font
//! file is needed on the server. Their widths are the Adobe metrics below,
//! which is all line wrapping needs. Content streams are left
//! uncompressed: the document is small, and its text stays searchable
//! with any tool.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const BODY_SIZE: f32 = 10.0;
const TABLE_SIZE: f32 = 9.0;
const FOOTER_SIZE: f32 = 8.0;
/// The lowest a line of text may sit: above the footer.
const BOTTOM: f32 = MARGIN + 14.0;
const CELL_PADDING: f32 = 4.0;

/// The typeface of a run of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Face {
    Regular,
    Bold,
    Italic,
}

impl Face {
    fn resource(self) -> Name<'static> {
        match self {
            Face::Regular => Name(b"F1"),
            Face::Bold => Name(b"F2"),
            Face::Italic => Name(b"F3"),
        }
    }
}

/// A run of text in one face.
#[derive(Debug, Clone, PartialEq)]
struct Span {
    text: String,
    face: Face,
}

/// What the Markdown says, as blocks to lay out.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    Heading(u8, Vec<Span>),
    Paragraph(Vec<Span>),
    Item(String, Vec<Span>),
    Table(Vec<Vec<Vec<Span>>>),
}

/// Lays `markdown` out on A4 pages. `title` goes in the file's
/// properties; `footer` (such as the generation time) at the foot of every
/// page, before the page number.
pub fn markdown_pdf(markdown: &str, title: &str, footer: &str) -> Vec<u8> {
    let blocks = blocks(markdown);
    let mut layout = Layout::new();
    for block in &blocks {
        layout.block(block);
    }
    layout.finish(title, footer)
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut spans: Vec<Span> = Vec::new();
    let mut bold = 0u32;
    let mut italic = 0u32;
    // One counter per list being read: `None` for bullets.
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut item_marker: Option<String> = None;
    let mut table: Option<Vec<Vec<Vec<Span>>>> = None;
    let mut heading: Option<u8> = None;

    let push_text = |spans: &mut Vec<Span>, text: &str, bold: u32, italic: u32| {
        let face = if bold > 0 {
            Face::Bold
        } else if italic > 0 {
            Face::Italic
        } else {
            Face::Regular
        };
        match spans.last_mut() {
            Some(last) if last.face == face => last.text.push_str(text),
            _ => spans.push(Span {
                text: text.to_owned(),
                face,
            }),
        }
    };
    // The text of a list item that holds no paragraph is read until the
    // item ends; one that holds paragraphs is flushed at each of them.
    let flush =
        |spans: &mut Vec<Span>, blocks: &mut Vec<Block>, item_marker: &mut Option<String>| {
            if spans.iter().all(|s| s.text.trim().is_empty()) {
                spans.clear();
                return;
            }
            let taken = std::mem::take(spans);
            match item_marker.take() {
                Some(marker) => blocks.push(Block::Item(marker, taken)),
                None => blocks.push(Block::Paragraph(taken)),
            }
        };

    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                spans.clear();
                heading = Some(level as u8);
            }
            Event::End(TagEnd::Heading(_)) => {
                let level = heading.take().unwrap_or(1);
                blocks.push(Block::Heading(level, std::mem::take(&mut spans)));
            }
            Event::Start(Tag::Paragraph) => {}
            Event::End(TagEnd::Paragraph) if table.is_none() => {
                flush(&mut spans, &mut blocks, &mut item_marker);
            }
            Event::Start(Tag::List(first)) => {
                flush(&mut spans, &mut blocks, &mut item_marker);
                lists.push(first);
            }
            Event::End(TagEnd::List(_)) => {
                lists.pop();
            }
            Event::Start(Tag::Item) => {
                flush(&mut spans, &mut blocks, &mut item_marker);
                let depth = lists.len().saturating_sub(1);
                let marker = match lists.last_mut() {
                    Some(Some(n)) => {
                        let marker = format!("{n}.");
                        *n += 1;
                        marker
                    }
                    _ => "\u{2022}".to_owned(),
                };
                item_marker = Some(format!("{}{marker}", "  ".repeat(depth)));
            }
            Event::End(TagEnd::Item) => flush(&mut spans, &mut blocks, &mut item_marker),
            Event::Start(Tag::Table(_)) => table = Some(Vec::new()),
            Event::End(TagEnd::Table) => {
                if let Some(rows) = table.take() {
                    blocks.push(Block::Table(rows));
                }
            }
            Event::Start(Tag::TableHead) | Event::Start(Tag::TableRow) => {
                if let Some(rows) = table.as_mut() {
                    rows.push(Vec::new());
                }
            }
            Event::Start(Tag::TableCell) => spans.clear(),
            Event::End(TagEnd::TableCell) => {
                let cell = std::mem::take(&mut spans);
                if let Some(row) = table.as_mut().and_then(|rows| rows.last_mut()) {
                    row.push(cell);
                }
            }
            Event::Start(Tag::Strong) => bold += 1,
            Event::End(TagEnd::Strong) => bold = bold.saturating_sub(1),
            Event::Start(Tag::Emphasis) => italic += 1,
            Event::End(TagEnd::Emphasis) => italic = italic.saturating_sub(1),
            Event::Text(text) | Event::Code(text) => push_text(&mut spans, &text, bold, italic),
            // Raw HTML (a reason typed by staff) is shown as it was typed.
            Event::Html(text) | Event::InlineHtml(text) => {
                push_text(&mut spans, &text, bold, italic)
            }
            Event::SoftBreak | Event::HardBreak => push_text(&mut spans, " ", bold, italic),
            Event::Rule => flush(&mut spans, &mut blocks, &mut item_marker),
            _ => {}
        }
    }
    flush(&mut spans, &mut blocks, &mut item_marker);
    blocks
}

/// Pages being filled, top to bottom.
struct Layout {
    pages: Vec<Content>,
    /// The baseline of the next line on the last page.
    y: f32,
}

/// A laid-out line: runs of text at x offsets.
type Line = Vec<(f32, Face, String)>;

impl Layout {
    fn new() -> Self {
        Self {
            pages: vec![Content::new()],
            y: PAGE_HEIGHT - MARGIN,
        }
    }

    fn new_page(&mut self) {
        self.pages.push(Content::new());
        self.y = PAGE_HEIGHT - MARGIN;
    }

    /// Makes room for `height` below the current line, starting a page if
    /// it does not fit.
    fn room(&mut self, height: f32) {
        if self.y - height < BOTTOM {
            self.new_page();
        }
    }

    fn page(&mut self) -> &mut Content {
        if self.pages.is_empty() {
            self.pages.push(Content::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn block(&mut self, block: &Block) {
        let width = PAGE_WIDTH - 2.0 * MARGIN;
        match block {
            Block::Heading(level, spans) => {
                let size = match level {
                    1 => 18.0,
                    2 => 14.0,
                    _ => 12.0,
                };
                let bold: Vec<Span> = spans
                    .iter()
                    .map(|s| Span {
                        text: s.text.clone(),
                        face: Face::Bold,
                    })
                    .collect();
                let lines = wrap(&bold, size, width);
                // A heading never ends a page: keep it with a line of what follows.
                self.room(size * 0.8 + lines.len() as f32 * size * 1.25 + BODY_SIZE * 2.5);
                self.y -= size * 0.8;
                self.lines(&lines, MARGIN, size, size * 1.25);
                self.y -= size * 0.4;
            }
            Block::Paragraph(spans) => {
                let lines = wrap(spans, BODY_SIZE, width);
                self.lines_breaking(&lines, MARGIN, BODY_SIZE, BODY_SIZE * 1.4);
                self.y -= BODY_SIZE * 0.6;
            }
            Block::Item(marker, spans) => {
                let indent = 16.0 + 8.0 * (marker.len() - marker.trim_start().len()) as f32;
                let lines = wrap(spans, BODY_SIZE, width - indent);
                self.room(BODY_SIZE * 1.4);
                self.text(
                    MARGIN + indent - 12.0,
                    self.y - BODY_SIZE * 1.4,
                    Face::Regular,
                    BODY_SIZE,
                    marker.trim_start(),
                );
                self.lines_breaking(&lines, MARGIN + indent, BODY_SIZE, BODY_SIZE * 1.4);
                self.y -= BODY_SIZE * 0.2;
            }
            Block::Table(rows) => self.table(rows, width),
        }
    }

    /// Lines kept together (a heading).
    fn lines(&mut self, lines: &[Line], x: f32, size: f32, leading: f32) {
        for line in lines {
            self.y -= leading;
            self.line(line, x, size);
        }
    }

    /// Lines that may run onto the next page.
    fn lines_breaking(&mut self, lines: &[Line], x: f32, size: f32, leading: f32) {
        for line in lines {
            self.room(leading);
            self.y -= leading;
            self.line(line, x, size);
        }
    }

    fn line(&mut self, line: &Line, x: f32, size: f32) {
        let y = self.y;
        for (dx, face, text) in line {
            self.text(x + dx, y, *face, size, text);
        }
    }

    fn text(&mut self, x: f32, y: f32, face: Face, size: f32, text: &str) {
        let bytes = win_ansi(text);
        let page = self.page();
        page.begin_text()
            .set_font(face.resource(), size)
            .next_line(x, y);
        show(page, &bytes);
        page.end_text();
    }

    fn rule(&mut self, x1: f32, x2: f32, y: f32, width: f32) {
        self.page()
            .set_line_width(width)
            .move_to(x1, y)
            .line_to(x2, y)
            .stroke();
    }

    fn table(&mut self, rows: &[Vec<Vec<Span>>], width: f32) {
        let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
        if columns == 0 {
            return;
        }
        // Each column as wide as its widest cell if the page allows; else
        // at least as wide as its longest word (so a site's name is not
        // cut), the rest of the page shared in proportion to what each
        // column would still need.
        let mut natural = vec![0f32; columns];
        let mut least = vec![0f32; columns];
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                let w: f32 = cell
                    .iter()
                    .map(|s| text_width(&s.text, Face::Bold, TABLE_SIZE))
                    .sum();
                natural[i] = natural[i].max(w);
                let word = cell
                    .iter()
                    .flat_map(|s| s.text.split_whitespace())
                    .map(|word| text_width(word, Face::Bold, TABLE_SIZE))
                    .fold(0f32, f32::max);
                least[i] = least[i].max(word);
            }
        }
        // A table whose longest words alone are wider than the page is
        // set smaller (down to 6 points) before any word is cut.
        let padding = 2.0 * CELL_PADDING * columns as f32;
        let size = {
            let words: f32 = least.iter().sum();
            if words + padding > width {
                (TABLE_SIZE * (width - padding) / words.max(1.0)).clamp(6.0, TABLE_SIZE)
            } else {
                TABLE_SIZE
            }
        };
        let scale = size / TABLE_SIZE;
        for w in natural.iter_mut().chain(least.iter_mut()) {
            *w = *w * scale + 2.0 * CELL_PADDING;
        }
        let total: f32 = natural.iter().sum();
        let least_total: f32 = least.iter().sum();
        let widths: Vec<f32> = if total <= width {
            natural
        } else if least_total >= width {
            least.iter().map(|w| w / least_total * width).collect()
        } else {
            let spare = width - least_total;
            let wanted: f32 = natural.iter().zip(&least).map(|(n, l)| n - l).sum();
            natural
                .iter()
                .zip(&least)
                .map(|(n, l)| l + (n - l) / wanted.max(1.0) * spare)
                .collect()
        };
        let table_width: f32 = widths.iter().sum();
        let leading = size * 1.3;
        let laid: Vec<Vec<Vec<Line>>> = rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                row.iter()
                    .enumerate()
                    .map(|(i, cell)| {
                        let spans: Vec<Span> = if r == 0 {
                            cell.iter()
                                .map(|s| Span {
                                    text: s.text.clone(),
                                    face: Face::Bold,
                                })
                                .collect()
                        } else {
                            cell.clone()
                        };
                        wrap(&spans, size, widths[i] - 2.0 * CELL_PADDING)
                    })
                    .collect()
            })
            .collect();
        let height = |cells: &Vec<Vec<Line>>| {
            cells.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32 * leading + CELL_PADDING
        };
        self.y -= 4.0;
        for (r, cells) in laid.iter().enumerate() {
            let h = height(cells);
            if r == 0 {
                // The header row never ends a page: keep it with the first row.
                let first = laid.get(1).map_or(0.0, height);
                if self.y - h - first < BOTTOM {
                    self.new_page();
                }
            } else if self.y - h < BOTTOM {
                self.new_page();
                // The header row again, so a column is never unnamed.
                if let Some(header) = laid.first() {
                    let hh = height(header);
                    self.row(header, &widths, hh, leading, size);
                    self.rule(MARGIN, MARGIN + table_width, self.y, 0.8);
                }
            }
            self.row(cells, &widths, h, leading, size);
            self.rule(
                MARGIN,
                MARGIN + table_width,
                self.y,
                if r == 0 { 0.8 } else { 0.3 },
            );
        }
        self.y -= BODY_SIZE;
    }

    fn row(&mut self, cells: &[Vec<Line>], widths: &[f32], height: f32, leading: f32, size: f32) {
        let top = self.y;
        let mut x = MARGIN;
        for (i, lines) in cells.iter().enumerate() {
            let mut y = top;
            for line in lines {
                y -= leading;
                for (dx, face, text) in line {
                    self.text(x + CELL_PADDING + dx, y, *face, size, text);
                }
            }
            x += widths.get(i).copied().unwrap_or(0.0);
        }
        self.y = top - height;
    }

    fn finish(mut self, title: &str, footer: &str) -> Vec<u8> {
        let mut pdf = Pdf::new();
        let catalog = Ref::new(1);
        let tree = Ref::new(2);
        let info = Ref::new(3);
        let fonts = [
            (Face::Regular, Ref::new(4), "Helvetica"),
            (Face::Bold, Ref::new(5), "Helvetica-Bold"),
            (Face::Italic, Ref::new(6), "Helvetica-Oblique"),
        ];
        let first = 7;
        let count = self.pages.len();
        let page_ids: Vec<Ref> = (0..count).map(|i| Ref::new(first + 2 * i as i32)).collect();
        pdf.catalog(catalog).pages(tree);
        pdf.pages(tree)
            .kids(page_ids.iter().copied())
            .count(count as i32);
        pdf.document_info(info)
            .title(TextStr(title))
            .producer(TextStr("sheepdog"));
        for (_, id, name) in fonts {
            pdf.type1_font(id)
                .base_font(Name(name.as_bytes()))
                .encoding_predefined(Name(b"WinAnsiEncoding"));
        }
        let pages = std::mem::take(&mut self.pages);
        for (i, mut content) in pages.into_iter().enumerate() {
            let foot = format!("{footer}    Page {} of {count}", i + 1);
            let bytes = win_ansi(&foot);
            content
                .set_line_width(0.3)
                .move_to(MARGIN, MARGIN + 10.0)
                .line_to(PAGE_WIDTH - MARGIN, MARGIN + 10.0)
                .stroke()
                .begin_text()
                .set_font(Face::Regular.resource(), FOOTER_SIZE)
                .next_line(MARGIN, MARGIN);
            show(&mut content, &bytes);
            content.end_text();
            let page_id = page_ids[i];
            let content_id = Ref::new(page_id.get() + 1);
            let mut page = pdf.page(page_id);
            page.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT))
                .parent(tree)
                .contents(content_id);
            {
                let mut resources = page.resources();
                let mut font_map = resources.fonts();
                for (face, id, _) in fonts {
                    font_map.pair(face.resource(), id);
                }
            }
            page.finish();
            let data = content.finish();
            pdf.stream(content_id, &data);
        }
        pdf.finish()
    }
}

/// Shows encoded text. The writer hex-encodes a string with any byte
/// outside ASCII, so the ASCII stretches are shown on their own and stay
/// readable (and searchable) in the file; each show moves on by its width.
fn show(content: &mut Content, bytes: &[u8]) {
    let mut rest = bytes;
    while let Some(&first) = rest.first() {
        let ascii = first.is_ascii();
        let end = rest
            .iter()
            .position(|b| b.is_ascii() != ascii)
            .unwrap_or(rest.len());
        content.show(Str(&rest[..end]));
        rest = &rest[end..];
    }
}

/// Breaks runs of text into lines no wider than `width`; a word longer
/// than a line is cut.
fn wrap(spans: &[Span], size: f32, width: f32) -> Vec<Line> {
    // Columns sized to exactly their longest word must not cut it over a
    // rounding error.
    let width = width + 0.01;
    let mut lines: Vec<Line> = Vec::new();
    let mut line: Line = Vec::new();
    let mut x = 0f32;
    // Whether the text so far ended in a space, which the next word keeps.
    let mut spaced = false;
    for span in spans {
        let starts_spaced = span.text.starts_with(char::is_whitespace);
        for (n, word) in span.text.split_whitespace().enumerate() {
            let gap = if x > 0.0 && (n > 0 || starts_spaced || spaced) {
                text_width(" ", span.face, size)
            } else {
                0.0
            };
            let mut word = word.to_owned();
            let mut w = text_width(&word, span.face, size);
            let mut gap = gap;
            if x > 0.0 && x + gap + w > width {
                lines.push(std::mem::take(&mut line));
                x = 0.0;
                gap = 0.0;
            }
            while w > width - x && word.chars().count() > 1 {
                // Cut a word that cannot fit on any line.
                let mut cut = String::new();
                for c in word.chars() {
                    let mut next = cut.clone();
                    next.push(c);
                    if text_width(&next, span.face, size) > width - x - gap && !cut.is_empty() {
                        break;
                    }
                    cut = next;
                }
                let rest: String = word.chars().skip(cut.chars().count()).collect();
                place(&mut line, x, gap, span.face, &cut);
                lines.push(std::mem::take(&mut line));
                x = 0.0;
                gap = 0.0;
                word = rest;
                w = text_width(&word, span.face, size);
            }
            place(&mut line, x, gap, span.face, &word);
            x += gap + w;
        }
        spaced =
            span.text.ends_with(char::is_whitespace) || (spaced && span.text.trim().is_empty());
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Puts a word at the end of a line: words in the same face follow on in
/// one run of text, so the PDF holds phrases, not single words.
fn place(line: &mut Line, x: f32, gap: f32, face: Face, word: &str) {
    match line.last_mut() {
        Some((_, last, text)) if *last == face => {
            if gap > 0.0 {
                text.push(' ');
            }
            text.push_str(word);
        }
        _ => line.push((x + gap, face, word.to_owned())),
    }
}

/// Helvetica's advance widths (thousandths of the size) for ASCII 32–126,
/// from Adobe's font metrics; the oblique face has the same.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278,
    278, // space–/
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0–?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @–O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P–_
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // `–o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p–~
];

/// Helvetica-Bold's widths for ASCII 32–126.
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278,
    278, // space–/
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, // 0–?
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, // @–O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, // P–_
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, // `–o
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, // p–~
];

fn text_width(text: &str, face: Face, size: f32) -> f32 {
    let table = match face {
        Face::Bold => &HELVETICA_BOLD,
        Face::Regular | Face::Italic => &HELVETICA,
    };
    let units: u32 = text
        .chars()
        .map(|c| {
            let code = c as u32;
            if (32..127).contains(&code) {
                u32::from(table[(code - 32) as usize])
            } else {
                // Accented letters and punctuation outside ASCII are about
                // as wide as a lower-case letter.
                600
            }
        })
        .sum();
    units as f32 * size / 1000.0
}

/// The text in the base fonts' Windows ANSI encoding; a character it
/// lacks becomes `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            '\u{20AC}' => 0x80,
            '\u{2018}' => 0x91,
            '\u{2019}' => 0x92,
            '\u{201C}' => 0x93,
            '\u{201D}' => 0x94,
            '\u{2022}' => 0x95,
            '\u{2013}' => 0x96,
            '\u{2014}' => 0x97,
            '\u{2192}' => b'>',
            c if (c as u32) < 0x80 => c as u8,
            c if (0xA0..=0xFF).contains(&(c as u32)) => c as u8,
            _ => b'?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn headings_lists_and_tables_are_written_as_text() {
        let md = "# Filtering policy: Example Primary\n\nIntro with **bold** words.\n\n\
                  ## Groups\n\n1. first rule\n2. second rule\n\n- a bullet\n\n\
                  | category | action |\n|---|---|\n| Adult content | block |\n";
        let pdf = markdown_pdf(md, "Filtering policy", "Generated 1 May 2026 09:00");
        assert!(pdf.starts_with(b"%PDF-"));
        for text in [
            "Filtering policy: Example Primary",
            "Intro with",
            "bold",
            "Groups",
            "first rule",
            "2.",
            "a bullet",
            "Adult content",
            "block",
            "Page 1 of 1",
            "Generated 1 May 2026 09:00",
        ] {
            assert!(contains(&pdf, text), "{text:?} is not in the PDF");
        }
        assert!(contains(&pdf, "/Helvetica-Bold"));
    }

    #[test]
    fn long_documents_run_onto_numbered_pages_and_lines_wrap() {
        let mut md = String::from("# Long\n\n");
        for n in 0..200 {
            md.push_str(&format!("- item number {n} with a long tail of words that has to wrap onto a second line on an A4 page at ten points, however wide the page is\n"));
        }
        md.push_str("\n| a | b |\n|---|---|\n");
        for n in 0..120 {
            md.push_str(&format!("| row{n} | value |\n"));
        }
        let pdf = markdown_pdf(&md, "Long", "x");
        assert!(contains(&pdf, "Page 2 of"));
        assert!(contains(&pdf, "item number 199"));
        assert!(contains(&pdf, "row119"));
        // Wrapped: no line holds the whole item.
        assert!(!contains(
            &pdf,
            "item number 5 with a long tail of words that has to wrap onto a second line on an A4 page at ten points, however wide the page is"
        ));
        let lines = wrap(
            &[Span {
                text: "word ".repeat(100),
                face: Face::Regular,
            }],
            BODY_SIZE,
            200.0,
        );
        assert!(lines.len() > 5);
        for line in &lines {
            let (x, face, text) = &line[line.len() - 1];
            assert!(x + text_width(text, *face, BODY_SIZE) <= 200.0 + 0.02);
        }
    }

    #[test]
    fn text_outside_the_encoding_and_pdf_syntax_is_safe() {
        let md = "Reason: (maths) \\ lesson :) – caf\u{e9} \u{4e2d} <b>raw</b>\n";
        let pdf = markdown_pdf(md, "t", "f");
        // Parentheses and backslashes are escaped in PDF strings; text
        // either side of a character outside ASCII stays readable.
        assert!(contains(&pdf, "(Reason: \\(maths\\) \\\\ lesson :\\) )"));
        assert!(contains(&pdf, "( caf)"));
        assert!(contains(&pdf, "<b>raw</b>"));
        let encoded = win_ansi("caf\u{e9} \u{4e2d} \u{2013}");
        assert_eq!(
            encoded,
            vec![b'c', b'a', b'f', 0xE9, b' ', b'?', b' ', 0x96]
        );
    }
}
