#include <gtest/gtest.h>

#include <torch/torch.h>

#include <selfsup/dist.h>
#include <selfsup/errors.h>

using namespace selfsup;

TEST(DistTest, OneProcessIsTheIdentity) {
  Distributed& d = dist();
  EXPECT_EQ(d.rank(), 0);
  EXPECT_EQ(d.world_size(), 1);
  auto x = torch::tensor({1.0, 2.0}, torch::requires_grad());
  auto y = d.all_gather_with_grad(x * 3);
  (y * torch::tensor({1.0, 10.0})).sum().backward();
  EXPECT_TRUE(torch::equal(y.detach(), torch::tensor({3.0, 6.0})));
  EXPECT_TRUE(torch::equal(x.grad(), torch::tensor({3.0, 30.0}))); // the gradient flows
  auto r = torch::tensor({4.0});
  d.all_reduce(r, ReduceOp::Mean);
  EXPECT_EQ(r.item<double>(), 4.0);
  auto g = d.all_gather(r);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_FALSE(g[0].requires_grad());
  d.broadcast(r, 0);
  EXPECT_THROW(d.broadcast(r, 1), ValueError);
  d.barrier();
}
