include $(sort $(wildcard $(BR2_EXTERNAL_MESHD_PATH)/package/*/*.mk))
