//! A small YAML document tree that remembers where every node came from.
//!
//! Rule files are validated by hand rather than through serde so that every error can name
//! the file, line, column and field path, and so that unknown keys are reported by name at
//! their own position. This module turns the event stream of `yaml-rust2` into such a tree.
//! Anchors and aliases are refused: a rule file has no use for them, and they would make a
//! reported position ambiguous.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

impl Pos {
    fn from_marker(mark: Marker) -> Pos {
        Pos {
            line: mark.line(),
            col: mark.col() + 1,
        }
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// The node itself.
    pub value: Value,
}

/// The shape of a node. Scalars stay text until the validator asks for a type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar and whether it was quoted (a quoted `1` is a string, not a number).
    Scalar(String, bool),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order, keys with their own positions.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text, if this is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// A word for the node's shape, for "expected X, found Y" messages.
    pub fn shape(&self) -> &'static str {
        match &self.value {
            Value::Scalar(s, quoted) if !quoted && is_null(s) => "null",
            Value::Scalar(..) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Whether an unquoted scalar is YAML's null.
pub fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// What it found.
    pub message: String,
}

/// Parse one YAML document. An empty document is `None`.
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        pos: Pos::from_marker(*e.marker()),
        message: e.info().to_owned(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root)
}

/// Collects events into nodes; containers under construction wait on a stack.
#[derive(Default)]
struct Builder {
    stack: Vec<Node>,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            // A mapping receives keys and values alternately; a pending key is stored with a
            // placeholder value that the next node replaces.
            Value::Map(entries) => match entries.last_mut() {
                Some((_, value)) if value.pos == PENDING => *value = node,
                _ => entries.push((
                    node,
                    Node {
                        pos: PENDING,
                        value: Value::Seq(Vec::new()),
                    },
                )),
            },
            Value::Scalar(..) => unreachable!("scalars are never on the stack"),
        }
    }
}

/// Marks the value slot of a key whose value has not arrived yet.
const PENDING: Pos = Pos { line: 0, col: 0 };

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = Pos::from_marker(mark);
        match event {
            Event::Scalar(text, style, anchor, _) => {
                if anchor != 0 {
                    self.refuse(pos, "anchors are not allowed in rule files");
                }
                let quoted = !matches!(style, TScalarStyle::Plain);
                self.push_value(Node {
                    pos,
                    value: Value::Scalar(text, quoted),
                });
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) if anchor != 0 => {
                self.refuse(pos, "anchors are not allowed in rule files");
            }
            Event::SequenceStart(..) => self.stack.push(Node {
                pos,
                value: Value::Seq(Vec::new()),
            }),
            Event::MappingStart(..) => self.stack.push(Node {
                pos,
                value: Value::Map(Vec::new()),
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = self.stack.pop().expect("balanced container events");
                self.push_value(node);
            }
            Event::Alias(_) => self.refuse(pos, "aliases are not allowed in rule files"),
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

impl Builder {
    fn refuse(&mut self, pos: Pos, message: &str) {
        self.error = Some(SyntaxError {
            pos,
            message: message.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_keys(node: &Node) -> Vec<(&str, Pos)> {
        let Value::Map(entries) = &node.value else {
            panic!("not a map")
        };
        entries
            .iter()
            .map(|(k, _)| (k.as_scalar().unwrap(), k.pos))
            .collect()
    }

    #[test]
    fn positions_are_one_based() {
        let root = parse("a: 1\nb:\n  c: [x, 'y']\n").unwrap().unwrap();
        assert_eq!(
            map_keys(&root),
            vec![
                ("a", Pos { line: 1, col: 1 }),
                ("b", Pos { line: 2, col: 1 })
            ]
        );
        let Value::Map(entries) = &root.value else {
            panic!()
        };
        let inner = &entries[1].1;
        assert_eq!(map_keys(inner), vec![("c", Pos { line: 3, col: 3 })]);
        let Value::Map(inner) = &inner.value else {
            panic!()
        };
        let Value::Seq(items) = &inner[0].1.value else {
            panic!()
        };
        assert_eq!(items[0].value, Value::Scalar("x".into(), false));
        assert_eq!(items[1].value, Value::Scalar("y".into(), true));
        assert_eq!(items[1].pos, Pos { line: 3, col: 10 });
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 2, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn empty_document_is_none() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn aliases_are_refused() {
        let err = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert_eq!(err.message, "anchors are not allowed in rule files");
        assert_eq!(err.pos.line, 1);
    }
}
