#include <gtest/gtest.h>

#include "eoc/diffusion.hpp"
#include "eoc/error.hpp"

TEST(Diffusion, Placeholder) { EXPECT_EQ(eoc::make_schedule(250, eoc::Respacing::even).size(), 250); }
