//! Scalar functions rules call beside DataFusion's own.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use cairn_ingest::normalize::identity::normalize_principal;

/// `normalize_principal(text)`: the identity key of a principal written in any form
/// (`CORP\alice`, `Alice@Corp.com`, an STS assumed-role ARN, a SID, an Entra object id), the
/// same key the `identities` table and findings' `identity_keys` hold; NULL for machine and
/// built-in accounts and for what names no one.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizePrincipal {
    signature: Signature,
}

impl Default for NormalizePrincipal {
    fn default() -> Self {
        NormalizePrincipal {
            signature: Signature::uniform(1, vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for NormalizePrincipal {
    fn name(&self) -> &str {
        "normalize_principal"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let input = arrays[0].as_string::<i32>();
        let out: StringArray = input
            .iter()
            .map(|v| v.and_then(normalize_principal))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

/// Every function of this module, to register in a session.
pub fn all() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(NormalizePrincipal::default())]
}
