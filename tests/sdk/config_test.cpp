#include <gtest/gtest.h>

#include "test_support.h"

#include <selfsup/config.h>

using namespace selfsup;
using selfsup::test::message_of;

TEST(JsonTest, ParsesKeepsOrderAndTypes) {
  Json j = Json::parse(R"({"b": 1, "a": 1.0, "c": [true, null, "s"], /* comment */ "d": {}})", "t");
  ASSERT_EQ(j.keys(), (std::vector<std::string>{"b", "a", "c", "d"}));
  EXPECT_TRUE(j.find("b")->is_int());
  EXPECT_EQ(j.find("a")->type(), Json::Type::Float);
  EXPECT_EQ(Json::parse(j.dump(), "t"), j);
  EXPECT_EQ(j.find("a")->dump(), "1.0");
}

TEST(JsonTest, ParseErrorNamesSourceLineAndColumn) {
  std::string msg = message_of([] { (void)Json::parse("{\n  \"a\": 1,\n  \"b\": }", "cfg.json"); });
  EXPECT_NE(msg.find("cfg.json:3:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;
}

TEST(ConfigTest, TypedGettersNamePathOnMismatch) {
  Config cfg(Json::parse(R"({"model": {"head": {"temperature": "0.1x", "k": 3,
                             "list": [1, 2.5], "flag": true}}})",
                         "t"));
  Config head = cfg["model"]["head"];
  EXPECT_EQ(head.path(), "model.head");
  EXPECT_EQ(head.get<int>("k"), 3);
  EXPECT_EQ(head.get<double>("k"), 3.0);
  EXPECT_EQ(head.get<std::vector<double>>("list"), (std::vector<double>{1, 2.5}));
  EXPECT_EQ(head.get<int64_t>("missing", 9), 9);
  std::string msg = message_of([&] { (void)head.get<double>("temperature"); });
  EXPECT_EQ(msg, "model.head.temperature: expected a number, got \"0.1x\"");
  msg = message_of([&] { (void)head.get<std::vector<int64_t>>("list"); });
  EXPECT_EQ(msg, "model.head.list[1]: expected an int, got 2.5");
  msg = message_of([&] { (void)head["nope"]; });
  EXPECT_EQ(msg, "model.head.nope: required key is missing");
  msg = message_of([&] { (void)head.get<std::string>("flag"); });
  EXPECT_EQ(msg, "model.head.flag: expected a string, got true");
}
