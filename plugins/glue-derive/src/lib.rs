//! `#[derive(FromJson)]`: a configuration decoder generated from a type's `#[serde(...)]`
//! attributes, so the plugin, the CLI and the JSON Schema keep one set of types.
//!
//! It reads the subset of serde's attributes Wasmgate's configurations use, and refuses any
//! other at compile time rather than decode differently from serde:
//! - containers: `deny_unknown_fields`, `rename_all = "snake_case"`, `tag = "..."` (enums);
//! - fields: `default`, `default = "path"`, `rename = "..."`, `skip_serializing_if` (ignored);
//! - variants: `rename = "..."`.
//!
//! Its own container attribute `#[from_json(inline_never)]` keeps the type's decoder out of
//! its caller (for the large ones; see `inline_never`).
//!
//! Structs have named fields. Enums are externally tagged (`"unit"` or `{"variant": value}`
//! with unit and one-field variants) or internally tagged (`tag`, unit and struct variants).
//! The generated code calls plain functions of `wasmgate_glue::json`; see there for why.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::quote;
use syn::{Data, DeriveInput, Error, Fields, LitStr, Result};

/// Derive `wasmgate_glue::json::FromJson` from the type and its `#[serde]` attributes.
#[proc_macro_derive(FromJson, attributes(serde, from_json))]
pub fn derive_from_json(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

#[derive(Default)]
struct Container {
    deny_unknown_fields: bool,
    snake_case: bool,
    tag: Option<String>,
}

enum Default {
    /// Required: missing is an error (but `Option` is `None`, as in serde).
    None,
    /// `#[serde(default)]`.
    Trait,
    /// `#[serde(default = "path")]`.
    Path(syn::ExprPath),
}

struct Field {
    ident: syn::Ident,
    ty: syn::Type,
    name: String,
    default: Default,
}

fn container_attrs(attrs: &[syn::Attribute]) -> Result<Container> {
    let mut c = Container::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("deny_unknown_fields") {
                c.deny_unknown_fields = true;
            } else if meta.path.is_ident("rename_all") {
                let rule: LitStr = meta.value()?.parse()?;
                if rule.value() != "snake_case" {
                    return Err(meta.error("FromJson: only rename_all = \"snake_case\""));
                }
                c.snake_case = true;
            } else if meta.path.is_ident("tag") {
                let tag: LitStr = meta.value()?.parse()?;
                c.tag = Some(tag.value());
            } else {
                return Err(meta.error("FromJson does not know this serde attribute"));
            }
            Ok(())
        })?;
    }
    Ok(c)
}

/// `#[from_json(inline_never)]` on the type: its decoder is never inlined into its caller.
fn inline_never(attrs: &[syn::Attribute]) -> Result<bool> {
    let mut never = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("from_json")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("inline_never") {
                never = true;
                Ok(())
            } else {
                Err(meta.error("FromJson: only #[from_json(inline_never)]"))
            }
        })?;
    }
    Ok(never)
}

fn field_attrs(field: &syn::Field) -> Result<(Option<String>, Default)> {
    let mut rename = None;
    let mut default = Default::None;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("default") {
                default = if meta.input.peek(syn::Token![=]) {
                    let path: LitStr = meta.value()?.parse()?;
                    Default::Path(path.parse()?)
                } else {
                    Default::Trait
                };
            } else if meta.path.is_ident("rename") {
                let name: LitStr = meta.value()?.parse()?;
                rename = Some(name.value());
            } else if meta.path.is_ident("skip_serializing_if") {
                // Serialization only.
                let _: LitStr = meta.value()?.parse()?;
            } else {
                return Err(meta.error("FromJson does not know this serde attribute"));
            }
            Ok(())
        })?;
    }
    Ok((rename, default))
}

fn variant_rename(variant: &syn::Variant) -> Result<Option<String>> {
    let mut rename = None;
    for attr in variant.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                let name: LitStr = meta.value()?.parse()?;
                rename = Some(name.value());
                Ok(())
            } else {
                Err(meta.error("FromJson does not know this serde attribute"))
            }
        })?;
    }
    Ok(rename)
}

/// serde's `snake_case` for a variant name: `AddIfAbsent` -> `add_if_absent`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.char_indices() {
        if ch.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

fn named_fields(fields: &Fields, span: Span) -> Result<Vec<Field>> {
    let Fields::Named(named) = fields else {
        return Err(Error::new(span, "FromJson: named fields only"));
    };
    named
        .named
        .iter()
        .map(|f| {
            let (rename, default) = field_attrs(f)?;
            let ident = f
                .ident
                .clone()
                .ok_or_else(|| Error::new(span, "unnamed field"))?;
            let name =
                rename.unwrap_or_else(|| ident.to_string().trim_start_matches("r#").to_owned());
            Ok(Field {
                ident,
                ty: f.ty.clone(),
                name,
                default,
            })
        })
        .collect()
}

/// The body decoding named `fields` from `entries` (a `&[(String, Json)]` in scope with
/// `at`), skipping the key `skip` (an internal tag), into `build` (`Self` or a variant path).
///
/// Which key is which field is found by `__json::fields`, one function for every type; the
/// code generated here only decodes each field into the value it builds, in the order the
/// fields are declared: no per-type key matching, no `Option` slot per field to fill and
/// drop (issue 14).
fn struct_body(fields: &[Field], deny: bool, skip: Option<&str>, build: Tokens) -> Tokens {
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let count = fields.len();
    let skip = match skip {
        Some(tag) => quote! { ::core::option::Option::Some(#tag) },
        None => quote! { ::core::option::Option::None },
    };
    let finish = fields.iter().enumerate().map(|(i, f)| {
        let ident = &f.ident;
        let name = &f.name;
        let ty = &f.ty;
        let missing = match &f.default {
            Default::None => quote! { <#ty as __json::FromJson>::missing(#name, at)? },
            Default::Trait => quote! { ::core::default::Default::default() },
            Default::Path(path) => quote! { #path() },
        };
        quote! {
            #ident: match __found[#i] {
                ::core::option::Option::Some(__v) => {
                    <#ty as __json::FromJson>::from_json(__v, &at.key(#name))?
                }
                ::core::option::Option::None => #missing,
            }
        }
    });
    quote! {
        const __FIELDS: &[&str] = &[#(#names),*];
        let mut __found: [::core::option::Option<&__json::Json>; #count] =
            [::core::option::Option::None; #count];
        __json::fields(__entries, __FIELDS, #deny, #skip, at, &mut __found)?;
        ::core::result::Result::Ok(#build { #(#finish),* })
    }
}

fn expand(input: &DeriveInput) -> Result<Tokens> {
    let name = &input.ident;
    let container = container_attrs(&input.attrs)?;
    let body = match &input.data {
        Data::Struct(data) => {
            if container.tag.is_some() || container.snake_case {
                return Err(Error::new_spanned(
                    name,
                    "FromJson: tag/rename_all on a struct",
                ));
            }
            let fields = named_fields(&data.fields, Span::call_site())?;
            let expected = format!("struct {name}");
            let inner = struct_body(
                &fields,
                container.deny_unknown_fields,
                None,
                quote! { #name },
            );
            quote! {
                let __entries = __json::object(json, #expected, at)?;
                #inner
            }
        }
        Data::Enum(data) => {
            let mut names = Vec::new();
            for v in &data.variants {
                names.push(variant_rename(v)?.unwrap_or_else(|| {
                    let id = v.ident.to_string();
                    if container.snake_case {
                        snake_case(&id)
                    } else {
                        id
                    }
                }));
            }
            match &container.tag {
                Some(tag) => internally_tagged(name, data, &names, tag, &container)?,
                None => externally_tagged(name, data, &names)?,
            }
        }
        Data::Union(_) => return Err(Error::new_spanned(name, "FromJson: no unions")),
    };
    // A large decoder (many fields, each decoded inline) stays a function of its own rather
    // than be folded into its one caller: V8 compiles every function at load and keeps the
    // peak working memory of the largest (bench/module-memory.md, issue 14).
    let noinline = if inline_never(&input.attrs)? {
        quote! { #[inline(never)] }
    } else {
        Tokens::new()
    };
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::wasmgate_glue::json::FromJson for #name #ty_generics #where_clause {
            #noinline
            fn from_json(
                json: &::wasmgate_glue::json::Json,
                at: &::wasmgate_glue::json::At<'_>,
            ) -> ::core::result::Result<Self, ::wasmgate_glue::json::Error> {
                use ::wasmgate_glue::json as __json;
                #body
            }
        }
    })
}

fn externally_tagged(name: &syn::Ident, data: &syn::DataEnum, names: &[String]) -> Result<Tokens> {
    let expected = format!("enum {name}");
    let units = data
        .variants
        .iter()
        .all(|v| matches!(v.fields, Fields::Unit));
    if units && !data.variants.is_empty() {
        return Ok(unit_enum(name, data, names, &expected));
    }
    let arms = data.variants.iter().zip(names).map(|(v, vname)| {
        let ident = &v.ident;
        match &v.fields {
            Fields::Unit => Ok(quote! {
                #vname => {
                    __json::unit_variant(__content, &at.key(__name))?;
                    ::core::result::Result::Ok(#name::#ident)
                }
            }),
            Fields::Unnamed(f) if f.unnamed.len() == 1 => Ok(quote! {
                #vname => ::core::result::Result::Ok(#name::#ident(
                    __json::FromJson::from_json(
                        __json::newtype_variant(__content, at)?,
                        &at.key(__name),
                    )?
                )),
            }),
            _ => Err(Error::new_spanned(
                ident,
                "FromJson: externally tagged variants are unit or have one field",
            )),
        }
    });
    let arms: Vec<Tokens> = arms.collect::<Result<_>>()?;
    Ok(quote! {
        const __VARIANTS: &[&str] = &[#(#names),*];
        let (__name, __content) = __json::variant(json, #expected, at)?;
        match __name {
            #(#arms)*
            _ => ::core::result::Result::Err(__json::unknown_variant(__name, __VARIANTS, at)),
        }
    })
}

/// An enum of unit variants only (`"second"`): which one is found by `__json::unit_enum`, one
/// function for every such type, so the code generated here only maps its index to the
/// variant (no name matching per type; issue 14).
fn unit_enum(name: &syn::Ident, data: &syn::DataEnum, names: &[String], expected: &str) -> Tokens {
    let last = data.variants.len().saturating_sub(1);
    let arms = data.variants.iter().enumerate().map(|(i, v)| {
        let ident = &v.ident;
        // `unit_enum` returns an index into `__VARIANTS`: the last arm takes the rest.
        if i == last {
            quote! { _ => #name::#ident, }
        } else {
            quote! { #i => #name::#ident, }
        }
    });
    quote! {
        const __VARIANTS: &[&str] = &[#(#names),*];
        ::core::result::Result::Ok(match __json::unit_enum(json, #expected, __VARIANTS, at)? {
            #(#arms)*
        })
    }
}

fn internally_tagged(
    name: &syn::Ident,
    data: &syn::DataEnum,
    names: &[String],
    tag: &str,
    container: &Container,
) -> Result<Tokens> {
    let expected = format!("internally tagged enum {name}");
    let arms = data.variants.iter().zip(names).map(|(v, vname)| {
        let ident = &v.ident;
        let fields = match &v.fields {
            Fields::Unit => Vec::new(),
            Fields::Named(_) => named_fields(&v.fields, Span::call_site())?,
            Fields::Unnamed(_) => {
                return Err(Error::new_spanned(
                    ident,
                    "FromJson: internally tagged variants are unit or have named fields",
                ))
            }
        };
        let body = struct_body(
            &fields,
            container.deny_unknown_fields,
            Some(tag),
            quote! { #name::#ident },
        );
        Ok(quote! { #vname => { #body } })
    });
    let arms: Vec<Tokens> = arms.collect::<Result<_>>()?;
    Ok(quote! {
        const __VARIANTS: &[&str] = &[#(#names),*];
        let __entries = __json::object(json, #expected, at)?;
        let __tag = __json::tag(__entries, #tag, at)?;
        match __tag {
            #(#arms)*
            _ => ::core::result::Result::Err(
                __json::unknown_variant(__tag, __VARIANTS, &at.key(#tag))
            ),
        }
    })
}
