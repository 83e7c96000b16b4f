//! Reading a profile: TOML to typed fields, then the checks serde cannot make, every error
//! located in the text.

use serde::Deserialize;

use crate::{error, locate, validate, Profile, ProfileError};

/// Parses and validates the profile `text`, read from `file_name` (used only in error
/// messages).
pub fn parse(file_name: &str, text: &str) -> Result<Profile, ProfileError> {
    let tree =
        toml::de::DeTable::parse(text).map_err(|e| error::from_toml(file_name, text, None, &e))?;
    let profile = Profile::deserialize(toml::de::Deserializer::from(tree.clone()))
        .map_err(|e| error::from_toml(file_name, text, Some(&tree), &e))?;
    let written = |path: &locate::Path| locate::find(tree.get_ref(), path).is_some();
    validate::check(&profile, &written)
        .map_err(|found| error::from_validation(file_name, text, &tree, found))?;
    Ok(profile)
}
