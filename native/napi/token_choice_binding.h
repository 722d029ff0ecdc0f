// Token choices from JS: a step segment's `choice` option, and chooseTokens(), the test hook that runs a backend's
// choice over rows of logits the caller gives.
#pragma once

#include <napi.h>

#include "../core/token_choice.h"

namespace dynamoe {

// { limit, temperature?, topK?, topP?, uniform? } with limit in [1, vocab]; throws ERR_DYNAMOE_VALUE naming the field.
TokenChoice readTokenChoice(const Napi::Value& value, int vocab);

// chooseTokens(logits: Float32Array (rows x vocab), vocab, choices: TokenChoice[] (one per row), device?):
// Int32Array of each row's token, chosen by that backend's kernels (bounded: rows x vocab <= 2^22).
Napi::Value ChooseTokens(const Napi::CallbackInfo& info);

}  // namespace dynamoe
