#pragma once
// Symbol visibility for the selfsup libraries. Everything is hidden by default
// (-fvisibility=hidden); the public surface is marked explicitly.
#define SELFSUP_SDK_API __attribute__((visibility("default")))
#define SELFSUP_CORE_API __attribute__((visibility("default")))
