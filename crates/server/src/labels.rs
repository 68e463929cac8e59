//! Label enums: enums whose values are written out as fixed words — the bounded labels of the
//! metrics (route class, gRPC method, front, connection limit) and words of the wire (a pandas
//! orient). One [`label_enum!`] declaration gives the enum, every value in declaration order
//! (`ALL`, the order they are rendered in), each value's word (`as_str`), its position in
//! `ALL` (`index`, the slot of its counter) and the value a word names (`parse`), so the list
//! of values cannot drift from the enum, nor a word from its value.

/// Declares a label enum: `label_enum! { /// doc \n pub enum Name { /// doc \n Value => "word", ... } }`.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; $crate::labels::label_enum!(@count $($variant)+)] =
                [$($name::$variant),+];

            /// The word written out for this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }

            /// The position of this value in `ALL`.
            pub fn index(self) -> usize {
                self as usize
            }

            /// The value `word` names.
            pub fn parse(word: &str) -> Option<$name> {
                $name::ALL.into_iter().find(|v| v.as_str() == word)
            }
        }
    };
    (@count) => { 0usize };
    (@count $head:ident $($tail:ident)*) => {
        1usize + $crate::labels::label_enum!(@count $($tail)*)
    };
}
pub(crate) use label_enum;

#[cfg(test)]
mod tests {
    label_enum! {
        /// A test enum.
        enum Colour {
            /// The first.
            Red => "red",
            Green => "green",
            Blue => "blue",
        }
    }

    #[test]
    fn one_declaration_gives_values_words_and_positions() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::Green, Colour::Blue]);
        let words: Vec<&str> = Colour::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(words, ["red", "green", "blue"]);
        for (i, c) in Colour::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(Colour::parse(c.as_str()), Some(c));
        }
        assert_eq!(Colour::parse("Red"), None);
    }
}
